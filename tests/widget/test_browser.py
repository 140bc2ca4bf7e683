"""The widget in a real browser: JupyterLab + headless Chromium + a sam-server.

The tests start a model server (``python -m backend.serving.cli``, the demo
model when it exists, else a tiny random checkpoint) and JupyterLab on
127.0.0.1, both behind a token (see :mod:`tests.widget.browser_harness`);
write notebooks that show a ``SamWidget`` talking to the server through
``SamClient`` and write the widget's state to ``state.json`` (and the shown
mask to ``mask.npy``) whenever it changes; open them in headless Chromium
(every request not to 127.0.0.1 is aborted) and act as a person does.

``test_clicks_reach_the_kernel_and_masks_reach_the_canvas`` (JupyterLab 4,
Notebook 7 and Voila):

* the kernel received the click at the original-image pixel under the mouse;
* the mask overlay shows, in the page's canvas, exactly where the returned
  mask is;
* a right click adds a negative point, opens no application menu and has its
  browser default (the native menu) prevented.

``test_a_person_uses_the_controls`` (JupyterLab 4): the gestures legend is
visible; a click shows "segmenting…" with the controls disabled, then an
outlined mask in a colour that contrasts with the object and three
candidate buttons with scores in [0, 1]; key 2 picks a candidate; accept
counts the kept mask and clears the candidates; a text prompt that fails
shows the whole error, wrapped under the image, and keeps the typed text.

Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.formats.coordinates import canvas_to_image, image_to_canvas
from tests.widget.browser_harness import (
    CANVAS,
    FRONTEND_PATHS,
    REPO,
    can_run_browser,
    canvas_pixels,
    chromium_page,
    jupyter_server,
    model_server,
    read_json,
    run_notebook,
    wait_for,
    write_notebook,
)
from tests.widget.conftest import shown_image_pixels
from widget.drawing import CANDIDATE_OUTLINE, POINT_RADIUS, outline
from widget.events import GESTURES

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ARTIFACTS = REPO / "test-artifacts"
IMAGE_SIZE = (600, 450)  # width, height: shown scaled to the 400x300 canvas
MAX_CANVAS = (400, 300)

NOTEBOOK_TEMPLATE = """
import json, os
import numpy as np
from backend.client.http_client import SamClient
from tests.widget.conftest import scene, shapes_scene
from widget import SamWidget

w = SamWidget({image}, SamClient(os.environ["SAM_URL"], os.environ["SAM_TOKEN"]), max_canvas_size={canvas}, {options})

def write_atomic(name, save):
    save(name + ".tmp")
    os.replace(name + ".tmp", name)

def dump(_=None):
    chosen = w.current.chosen
    if chosen is not None:
        write_atomic("mask.npy", lambda p: np.save(open(p, "wb"), chosen.mask))
    color = w.candidate_color
    state = {{"image_id": w.image_id, "scale": w.scale, "canvas_size": list(w.canvas_size),
             "status": w.status, "status_kind": w.status_kind, "busy": w.busy,
             "points": [[p.x, p.y, p.positive] for p in w.current.points], "candidates": len(w.candidates),
             "scores": [c.score for c in w.candidates], "selected": w.selected, "kept": len(w.masks),
             "candidate_color": None if color is None else list(color), "text": w.toolbar.text.value}}
    write_atomic("state.json", lambda p: json.dump(state, open(p, "w")))

w.observe(dump, ["candidates", "status", "image_id", "selected", "masks", "busy"])
dump()
w
"""
CLICK_NOTEBOOK = NOTEBOOK_TEMPLATE.format(
    image=f"scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]})", canvas=MAX_CANVAS, options="opacity=1.0"
)
CONTROLS_NOTEBOOK = NOTEBOOK_TEMPLATE.format(
    image=f"shapes_scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]})",
    canvas=MAX_CANVAS,
    options="labels=['car', 'ball']",
)


@pytest.fixture(scope="module")
def sam_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, token)`` of a sam-server on 127.0.0.1 serving the demo or a tiny random model."""
    with model_server(tmp_path_factory.mktemp("sam-server")) as server:
        yield server


@pytest.fixture
def jupyter(tmp_path: Path, sam_server: tuple[str, str]) -> Iterator[tuple[str, Path]]:
    """``(URL template, notebook folder)`` of a Jupyter server with ``widget.ipynb`` and ``controls.ipynb``."""
    if not can_run_browser():
        pytest.skip("needs /usr/bin/chromium and jupyterlab in this environment")
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / "widget.ipynb", CLICK_NOTEBOOK)
    write_notebook(root / "controls.ipynb", CONTROLS_NOTEBOOK)
    url, token = sam_server
    with jupyter_server(root, tmp_path, sam_url=url, sam_token=token) as template:
        yield template, root


def js_round(value: float) -> int:
    """JavaScript's ``Math.round`` (half up), which ipyevents applies to ``relativeX/Y``."""
    return math.floor(value + 0.5)


def open_widget(
    page: Any, url: str, frontend: str, state_file: Path
) -> tuple[Any, list[float], dict[str, Any]]:
    """Open the notebook, run it and wait for the embedding: ``(canvas element, its CSS rect, state)``."""
    page.goto(url)
    page.evaluate(CONTEXT_MENU_PROBE)
    run_notebook(page, frontend)
    canvas = page.wait_for_selector(CANVAS, timeout=180_000)
    assert canvas is not None
    canvas.scroll_into_view_if_needed()
    wait_for(lambda: read_json(state_file)["image_id"], 180, "the embedding")
    return canvas, css_rect(canvas), read_json(state_file)


def css_rect(element: Any) -> list[float]:
    """``[left, top, width, height]`` of an element in CSS pixels of the viewport (changes with scrolling)."""
    script = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"
    return list(element.evaluate(script))


CONTEXT_MENU_PROBE = """() => {
    window.__contextMenus = [];
    window.addEventListener('contextmenu', e => {
        setTimeout(() => window.__contextMenus.push({tag: e.target.tagName, prevented: e.defaultPrevented}), 0);
    }, true);
}"""


@pytest.mark.parametrize("frontend", sorted(FRONTEND_PATHS))
def test_clicks_reach_the_kernel_and_masks_reach_the_canvas(jupyter: tuple[str, Path], frontend: str) -> None:
    needs = {"notebook7": "notebook", "voila": "voila"}.get(frontend)
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{frontend} needs the {needs!r} package (pip install 'sam-server[test]')")
    url_template, root = jupyter
    url = url_template.format(path=FRONTEND_PATHS[frontend].format(name="widget.ipynb"))
    ARTIFACTS.mkdir(exist_ok=True)
    state_file = root / "state.json"

    def state() -> dict[str, Any]:
        return read_json(state_file)

    with chromium_page() as page:
        _, rect, ready = open_widget(page, url, frontend, state_file)
        scale = ready["scale"]
        canvas_w, canvas_h = ready["canvas_size"]

        def expected_image_xy(client_x: int, client_y: int) -> tuple[float, float]:
            rel_x, rel_y = js_round(client_x - rect[0]), js_round(client_y - rect[1])
            return canvas_to_image(rel_x * canvas_w / rect[2], rel_y * canvas_h / rect[3], scale)

        # left click on the bright rectangle -> positive point, three candidates, overlay
        click_x, click_y = math.ceil(rect[0] + 0.55 * rect[2]), math.ceil(rect[1] + 0.5 * rect[3])
        page.mouse.click(click_x, click_y)
        first = wait_for(lambda: (s := state())["candidates"] and not s["busy"] and s, 60, "the first answer")
        assert len(first["points"]) == 1
        x, y, positive = first["points"][0]
        assert positive is True
        assert (x, y) == pytest.approx(expected_image_xy(click_x, click_y), abs=1e-6)

        def wait_for_overlay(points: list[list[Any]]) -> None:
            wait_for_mask_on_canvas(page, root, state(), points)

        wait_for_overlay(first["points"])
        page.screenshot(path=str(ARTIFACTS / f"widget_{frontend}_click.png"))

        # right click -> negative point, and no JupyterLab context menu
        right_x, right_y = math.ceil(rect[0] + 0.1 * rect[2]), math.ceil(rect[1] + 0.15 * rect[3])
        page.mouse.click(right_x, right_y, button="right")
        second = wait_for(
            lambda: len((s := state())["points"]) == 2 and not s["busy"] and s, 60, "the negative point"
        )
        x2, y2, positive2 = second["points"][1]
        assert positive2 is False
        assert (x2, y2) == pytest.approx(expected_image_xy(right_x, right_y), abs=1e-6)
        page.wait_for_function("() => window.__contextMenus.length > 0", timeout=10_000)
        assert page.locator(".lm-Menu").count() == 0
        assert page.evaluate("window.__contextMenus") == [{"tag": "CANVAS", "prevented": True}]
        page.screenshot(path=str(ARTIFACTS / f"widget_{frontend}_right_click.png"))
        page.locator(".jp-OutputArea-output").first.screenshot(path=str(ARTIFACTS / f"widget_{frontend}.png"))
        if frontend != "voila":
            # control: elsewhere in the notebook the same right click does open the application menu
            page.locator(".jp-InputArea-editor").first.click(button="right")
            page.wait_for_selector(".lm-Menu", timeout=10_000)
            # a page reload attaches a new client to the live kernel: the widget redraws itself
            page.keyboard.press("Escape")
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            wait_for(
                lambda: "application/vnd.jupyter.widget-view+json" in (root / "widget.ipynb").read_text(),
                30,
                "the saved notebook",
            )
            page.reload()
            page.wait_for_selector(CANVAS, timeout=120_000)
            wait_for_overlay(second["points"])


def wait_for_mask_on_canvas(page: Any, root: Path, state: dict[str, Any], points: list[list[Any]]) -> None:
    """The canvas shows the last returned mask (``mask.npy``) in the candidate colour, pixel for
    pixel away from the drawn clicks (``state``: the notebook's, written with that mask)."""
    mask = np.load(root / "mask.npy")
    color, scale = state["candidate_color"], state["scale"]
    canvas_w, canvas_h = state["canvas_size"]
    assert mask.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0]) and color is not None
    expected = shown_image_pixels(mask, scale=scale, canvas_size=(canvas_w, canvas_h))
    yy, xx = np.mgrid[0:canvas_h, 0:canvas_w] + 0.5
    away = np.ones_like(expected)
    for px, py in (image_to_canvas(p[0], p[1], scale) for p in points):
        away &= (xx - px) ** 2 + (yy - py) ** 2 > (POINT_RADIUS + 3) ** 2
    assert expected[away].any(), "the returned mask shows nowhere on the canvas"

    def matches() -> bool:
        shown = np.all(canvas_pixels(page)[..., :3] == color, axis=-1)
        return bool(np.array_equal(shown[away], expected[away]))

    wait_for(matches, 20, "the mask overlay on the canvas")


STATUS_PROBE = """() => {
    window.__statuses = [];
    const record = () => {
        const status = document.querySelector('.sam-status');
        if (!status) return;
        const input = document.querySelector('.widget-text input');
        const entry = {text: status.textContent, kind: status.className, text_disabled: input ? input.disabled : null,
                       spinner: status.querySelector('.fa-spin') !== null};
        const last = window.__statuses[window.__statuses.length - 1];
        if (!last || last.text !== entry.text || last.kind !== entry.kind) window.__statuses.push(entry);
    };
    new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
    record();
}"""


def statuses_since(page: Any, start: int) -> list[dict[str, Any]]:
    """The status lines the page showed since entry ``start`` of the probe, in order."""
    return list(page.evaluate("window.__statuses"))[start:]


def candidate_buttons(page: Any) -> list[str]:
    """Texts of the candidate toggle buttons a person sees, in order."""
    return [t.strip() for t in page.locator(".widget-toggle-buttons button:visible").all_inner_texts()]


def check_outlined(page: Any, root: Path, state: dict[str, Any]) -> None:
    """The canvas shows the mask filled half-transparent and outlined opaque in the candidate colour."""
    mask = np.load(root / "mask.npy")
    color = np.asarray(state["candidate_color"])
    scale, (canvas_w, canvas_h) = state["scale"], state["canvas_size"]
    shown = shown_image_pixels(mask, scale=scale, canvas_size=(canvas_w, canvas_h))
    yy, xx = np.mgrid[0:canvas_h, 0:canvas_w] + 0.5
    away = np.ones_like(shown)
    for px, py in (image_to_canvas(p[0], p[1], scale) for p in state["points"]):
        away &= (xx - px) ** 2 + (yy - py) ** 2 > (POINT_RADIUS + 3) ** 2
    ring = outline(shown, CANDIDATE_OUTLINE) & away
    inside = shown & ~outline(shown, CANDIDATE_OUTLINE + 1) & away
    assert ring.sum() > 50 and inside.sum() > 50

    def outlined() -> bool:
        rgb = canvas_pixels(page)[..., :3].astype(int)
        on_ring = np.all(rgb[ring] == color, axis=-1).mean()
        blended_inside = np.all(np.abs(rgb[inside] - color) > 3, axis=-1).mean()
        return bool(on_ring == 1.0 and blended_inside > 0.99)

    wait_for(outlined, 20, "an opaque outline around a see-through fill")


def test_a_person_uses_the_controls(jupyter: tuple[str, Path]) -> None:
    url_template, root = jupyter
    url = url_template.format(path=FRONTEND_PATHS["jupyterlab"].format(name="controls.ipynb"))
    ARTIFACTS.mkdir(exist_ok=True)
    state_file = root / "state.json"

    def state() -> dict[str, Any]:
        return read_json(state_file)

    with chromium_page() as page:
        canvas, rect, ready = open_widget(page, url, "jupyterlab", state_file)
        output = page.locator(".jp-OutputArea-output .widget-vbox").first  # the SamWidget

        # the legend lists every gesture, visible without asking
        legend = page.locator(".sam-legend")
        assert legend.is_visible()
        for gesture, effect in GESTURES:
            assert gesture in legend.inner_text() and effect in legend.inner_text()
        page.evaluate(STATUS_PROBE)

        # click on the blue car: busy while the model runs, then an outlined mask and three candidates
        page.mouse.click(rect[0] + 0.25 * rect[2], rect[1] + 0.6 * rect[3])
        answered = wait_for(lambda: (s := state())["candidates"] and not s["busy"] and s, 60, "the answer")

        def shown_busy_then_answer() -> list[dict[str, Any]] | None:
            # the kernel has answered; the page may still be drawing what it sent (slow on a loaded machine)
            statuses = statuses_since(page, 0)
            kinds = [s["kind"] for s in statuses]
            busy_seen = any("sam-status-busy" in kind for kind in kinds)
            return statuses if busy_seen and "sam-status-busy" not in kinds[-1] else None

        seen = wait_for(shown_busy_then_answer, 30, "the page to show the busy status, then the answer")
        busy = [
            s for s in seen if "sam-status-busy" in s["kind"] and s["text"].strip().startswith("segmenting…")
        ]
        assert busy, f"no busy indicator among {seen}"
        assert busy[0]["spinner"] and busy[0]["text_disabled"] is True  # nothing takes input meanwhile ...
        wait_for(
            lambda: statuses_since(page, 0)[-1]["text"].startswith("3 masks in"), 10, "the answer's status"
        )
        done = statuses_since(page, 0)[-1]
        assert "sam-status-info" in done["kind"] and done["text_disabled"] is False  # ... and all does after
        buttons = wait_for(
            lambda: len(b := candidate_buttons(page)) == 3 and b, 10, "three candidate buttons"
        )
        for i, text in enumerate(buttons):
            match = re.fullmatch(r"(\d): ([01]\.\d\d)", text)
            assert match is not None and int(match[1]) == i + 1 and 0.0 <= float(match[2]) <= 1.0
        assert all(0.0 <= s <= 1.0 for s in answered["scores"])
        check_outlined(page, root, answered)
        output.screenshot(path=str(ARTIFACTS / "widget-click.png"))

        # key 2 (mouse over the image) shows the second candidate
        rect = css_rect(canvas)  # the screenshot may have scrolled the page
        page.mouse.move(rect[0] + 0.5 * rect[2], rect[1] + 0.5 * rect[3])
        page.keyboard.press("2")
        wait_for(lambda: state()["selected"] == 1, 20, "candidate 2")
        pressed = page.locator(".widget-toggle-buttons button.mod-active")
        wait_for(
            lambda: pressed.count() == 1 and pressed.inner_text().startswith("2:"), 10, "button 2 pressed"
        )

        # accept: the kept count goes up, the candidates and their buttons go away
        page.get_by_role("button", name="accept").click()
        kept = wait_for(lambda: (s := state())["status"].startswith('kept "car"') and s, 20, "the kept mask")
        assert kept["kept"] == 1 and kept["candidates"] == 0
        wait_for(lambda: page.get_by_text("kept: 1 mask", exact=True).is_visible(), 10, "the kept count")
        wait_for(lambda: candidate_buttons(page) == [], 10, "no candidate buttons")
        assert page.get_by_role("button", name="accept").is_disabled()
        output.screenshot(path=str(ARTIFACTS / "widget-accepted.png"))

        # a text prompt that fails: the whole error, wrapped under the image; the text stays (the
        # missing CLIP weights are found before segment-everything runs, so the "finding…" busy
        # line may pass before the page draws it; the click above checks the busy state)
        field = page.locator(".widget-text input")
        field.fill("a red car")
        field.press("Enter")
        failed = wait_for(
            lambda: (s := state())["status_kind"] == "error" and s, 240, "the text prompt's error"
        )
        status = page.locator(".sam-status-error")
        wait_for(
            lambda: status.count() == 1 and status.inner_text().strip() == failed["status"], 10, "the error"
        )
        assert len(failed["status"]) > 150  # long enough that it must wrap
        box = status.evaluate(
            "e => ({height: e.getBoundingClientRect().height, width: e.getBoundingClientRect().width,"
            " line: parseFloat(getComputedStyle(e).lineHeight), scroll: e.scrollWidth, client: e.clientWidth})"
        )
        assert box["height"] >= 2.5 * box["line"], box  # several lines, not one cut line
        assert box["scroll"] <= box["client"] and box["width"] <= rect[2] + 1, box
        assert field.input_value() == "a red car" and failed["text"] == "a red car"
        assert "try another click" not in failed["status"]
        output.screenshot(path=str(ARTIFACTS / "widget-error.png"))
        (ARTIFACTS / "widget-controls-state.json").write_text(json.dumps(failed, indent=1))
