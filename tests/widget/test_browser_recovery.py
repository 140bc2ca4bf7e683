"""The widget after its model server restarted, in a real browser (JupyterLab, headless Chromium).

A person clicks, the server restarts (its cache empty), the person clicks
again: the widget uploads the image again by itself and shows the answer to
both clicks, which equals what the restarted server returns for them. Before,
every click after a restart showed "unknown image_id" until the person called
``add_image`` by hand. Screenshot: ``test-artifacts/widget_after_restart.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from backend.client.http_client import SamClient
from tests.widget.browser_harness import (
    FRONTEND_PATHS,
    can_run_browser,
    chromium_page,
    free_port,
    jupyter_server,
    model_server,
    read_json,
    wait_for,
    write_notebook,
)
from tests.widget.test_browser import (
    ARTIFACTS,
    IMAGE_SIZE,
    MAX_CANVAS,
    NOTEBOOK_TEMPLATE,
    open_widget,
    wait_for_mask_on_canvas,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_a_click_after_the_model_server_restarted_is_answered(tmp_path: Path) -> None:
    if not can_run_browser():
        pytest.skip("needs /usr/bin/chromium and jupyterlab in this environment")
    port, token = free_port(), "restart-test-token"
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = NOTEBOOK_TEMPLATE.format(
        image=f"scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]})", canvas=MAX_CANVAS, options="opacity=1.0"
    )
    write_notebook(root / "restart.ipynb", notebook)
    state_file = root / "state.json"
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with jupyter_server(root, tmp_path, sam_url=url, sam_token=token) as template, chromium_page() as page:
        with model_server(tmp_path, log_name="first.log", port=port, token=token):
            _, rect, _ = open_widget(
                page,
                template.format(path=FRONTEND_PATHS["jupyterlab"].format(name="restart.ipynb")),
                "jupyterlab",
                state_file,
            )
            page.mouse.click(math.ceil(rect[0] + 0.55 * rect[2]), math.ceil(rect[1] + 0.5 * rect[3]))
            wait_for(
                lambda: (s := read_json(state_file))["candidates"] and not s["busy"], 60, "the first answer"
            )
        with model_server(tmp_path, log_name="second.log", port=port, token=token):  # its cache is empty
            page.mouse.click(math.ceil(rect[0] + 0.3 * rect[2]), math.ceil(rect[1] + 0.4 * rect[3]))
            state = wait_for(
                lambda: (
                    (s := read_json(state_file))["status_kind"] != "busy"
                    and len(s["points"]) == 2
                    and not s["busy"]
                    and s
                ),
                120,
                "the answer after the restart",
            )
            assert state["status_kind"] != "error", state["status"]
            assert state["candidates"] == 3
            client = SamClient(url, token)
            points = [[x, y] for x, y, _ in state["points"]]
            [fresh] = client.predict(state["image_id"], points=points, labels=[1, 1])
            np.testing.assert_array_equal(np.load(root / "mask.npy"), fresh.best)
            wait_for_mask_on_canvas(page, root, state, state["points"])
            page.screenshot(path=str(ARTIFACTS / "widget_after_restart.png"))
