"""The widget on a chosen model in a real browser: ``SamWidget(..., model=...)`` with a sam-server
serving the default model and a tiny random SAM 2.1 (hiera_t at a 256-pixel input).

A person clicks on the image in JupyterLab (headless Chromium); the widget
asks the SAM 2.1 model, not the server's default: the mask it shows, on the
canvas pixel for pixel, is the one the server's SAM 2.1 returns for that
point, and the default model's answer differs. Screenshot:
``test-artifacts/widget_sam2_click.png``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backend.client.http_client import SamClient
from tests.support.tiny_sam2 import save_tiny_sam2
from tests.widget.browser_harness import (
    FRONTEND_PATHS,
    can_run_browser,
    chromium_page,
    jupyter_server,
    model_server,
    read_json,
    wait_for,
    write_notebook,
)
from tests.widget.conftest import scene
from tests.widget.test_browser import (
    ARTIFACTS,
    IMAGE_SIZE,
    MAX_CANVAS,
    NOTEBOOK_TEMPLATE,
    open_widget,
    wait_for_mask_on_canvas,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``(url, token, SAM 2.1 model name)``: a sam-server whose second model is a tiny random SAM 2.1."""
    work = tmp_path_factory.mktemp("two-models")
    sam2 = str(save_tiny_sam2(work / "tiny-sam2.pt"))  # served under its path
    with model_server(work, more_models=(sam2,)) as (url, token):
        yield url, token, sam2


@pytest.fixture
def jupyter(tmp_path: Path, two_models: tuple[str, str, str]) -> Iterator[tuple[str, Path]]:
    """``(URL template, notebook folder)`` of a Jupyter server with ``sam2.ipynb``."""
    if not can_run_browser():
        pytest.skip("needs /usr/bin/chromium and jupyterlab in this environment")
    url, token, sam2 = two_models
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = NOTEBOOK_TEMPLATE.format(
        image=f"scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]})",
        canvas=MAX_CANVAS,
        options=f"opacity=1.0, model={sam2!r}",
    )
    write_notebook(root / "sam2.ipynb", notebook)
    with jupyter_server(root, tmp_path, sam_url=url, sam_token=token) as template:
        yield template, root


def test_a_click_on_a_widget_on_sam2_shows_that_models_mask(
    jupyter: tuple[str, Path], two_models: tuple[str, str, str]
) -> None:
    url_template, root = jupyter
    server_url, token, sam2 = two_models
    state_file = root / "state.json"
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page() as page:
        _, rect, _ = open_widget(
            page,
            url_template.format(path=FRONTEND_PATHS["jupyterlab"].format(name="sam2.ipynb")),
            "jupyterlab",
            state_file,
        )
        page.mouse.click(math.ceil(rect[0] + 0.55 * rect[2]), math.ceil(rect[1] + 0.5 * rect[3]))
        state = wait_for(
            lambda: (s := read_json(state_file))["candidates"] and not s["busy"] and s, 60, "the answer"
        )
        [(x, y, positive)] = state["points"]
        assert positive is True
        shown = np.load(root / "mask.npy")
        client = SamClient(server_url, token)
        [by_sam2] = client.predict(state["image_id"], points=[[x, y]], labels=[1], model=sam2)
        image = scene(IMAGE_SIZE[1], IMAGE_SIZE[0])  # the notebook's
        [by_default] = client.predict(client.add_image(image).image_id, points=[[x, y]], labels=[1])
        np.testing.assert_array_equal(shown, by_sam2.best)
        assert not np.array_equal(shown, by_default.best)
        wait_for_mask_on_canvas(page, root, state, state["points"])
        page.screenshot(path=str(ARTIFACTS / "widget_sam2_click.png"))
