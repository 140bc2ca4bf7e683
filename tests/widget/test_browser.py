"""The widget in a real browser: JupyterLab + headless Chromium + a sam-server.

The test starts a model server (``python -m backend.serving.cli``, the demo
model when it exists, else a tiny random checkpoint) and JupyterLab on
127.0.0.1, both behind a token; writes a notebook that shows a ``SamWidget``
talking to the server through ``SamClient``; opens it in headless Chromium
(every request not to 127.0.0.1 is aborted) in JupyterLab 4, Notebook 7
and Voila; clicks on the canvas and checks:

* the kernel received the click at the original-image pixel under the mouse
  (the notebook writes the widget state to ``state.json``);
* the mask overlay shows, in the page's canvas, exactly where the returned
  mask is (the notebook saves the mask as ``mask.npy``);
* a right click adds a negative point, opens no application menu and has its
  browser default (the native menu) prevented.

Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.formats.coordinates import canvas_to_image, image_to_canvas
from tests.widget.conftest import DEMO_WEIGHTS, shown_image_pixels, tiny_sam
from widget.drawing import CANDIDATE_COLOR, POINT_RADIUS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGE_SIZE = (600, 450)  # width, height: shown scaled to the 400x300 canvas
MAX_CANVAS = (400, 300)
CANVAS = ".jp-OutputArea-output canvas"

NOTEBOOK_CODE = f"""
import json, os
import numpy as np
from backend.client.http_client import SamClient
from tests.widget.conftest import scene
from widget import SamWidget

w = SamWidget(scene({IMAGE_SIZE[1]}, {IMAGE_SIZE[0]}), SamClient(os.environ["SAM_URL"], os.environ["SAM_TOKEN"]),
              max_canvas_size={MAX_CANVAS}, opacity=1.0)

def write_atomic(name, save):
    save(name + ".tmp")
    os.replace(name + ".tmp", name)

def dump(_=None):
    chosen = w.current.chosen
    if chosen is not None:
        write_atomic("mask.npy", lambda p: np.save(open(p, "wb"), chosen.mask))
    state = {{"image_id": w.image_id, "scale": w.scale, "canvas_size": list(w.canvas_size), "status": w.status,
             "points": [[p.x, p.y, p.positive] for p in w.current.points], "candidates": len(w.candidates)}}
    write_atomic("state.json", lambda p: json.dump(state, open(p, "w")))

w.observe(dump, ["candidates", "status", "image_id"])
dump()
w
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_ok(url: str) -> bool:
    import requests

    return requests.get(url, timeout=2).status_code == 200


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, token)`` of a sam-server on 127.0.0.1 serving the demo or a tiny random model."""
    work = tmp_path_factory.mktemp("sam-server")
    if DEMO_WEIGHTS.is_file():
        model = "demo"
    else:
        from backend.checkpoints import save_checkpoint

        sam = tiny_sam()
        model = str(work / "tiny.pt")
        save_checkpoint(
            model, model_state=sam.state_dict(), config=sam.config, meta={"note": "random, for tests"}
        )
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "backend.serving.cli",
        "--model",
        model,
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-plugins",
        "--threads",
        "4",
    ]
    env = dict(os.environ, SAM_TOKEN=token, PYTHONPATH=str(REPO))
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and http_ok(f"{url}/health"), 120, "sam-server /health")
        yield url, token
    finally:
        stop(proc)


FRONTEND_PATHS = {
    "jupyterlab": "lab/tree/widget.ipynb",
    "notebook7": "notebooks/widget.ipynb",
    "voila": "voila/render/widget.ipynb",
}


@pytest.fixture
def jupyter_server(tmp_path: Path, model_server: tuple[str, str]) -> Iterator[tuple[str, Path]]:
    """``(base url, notebook folder)`` of a Jupyter server (JupyterLab, Notebook 7 and Voila) with the widget notebook."""
    import nbformat

    if not Path(CHROMIUM).exists() or shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("needs /usr/bin/chromium and jupyterlab in this environment")
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    notebook.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CODE)]
    nbformat.write(notebook, root / "widget.ipynb")
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = free_port(), secrets.token_hex(16)
    server_url, server_token = model_server
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SAM_URL=server_url,
        SAM_TOKEN=server_token,
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
    )
    cmd = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ]
    with open(tmp_path / "lab.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and http_ok(f"{base}/api/status?token={token}"), 120, "Jupyter server"
        )
        yield f"{base}/{{path}}?token={token}", root
    finally:
        stop(proc)


def js_round(value: float) -> int:
    """JavaScript's ``Math.round`` (half up), which ipyevents applies to ``relativeX/Y``."""
    return math.floor(value + 0.5)


def canvas_pixels(page: Any) -> np.ndarray:
    """``hxwx4`` uint8 pixels of the widget's (composited) canvas element."""
    url = page.evaluate(f"() => document.querySelector('{CANVAS}').toDataURL('image/png')")
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def run_notebook(page: Any, frontend: str) -> None:
    """Run the notebook's cell (Voila runs it by itself when the page opens)."""
    if frontend == "voila":
        return
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


CONTEXT_MENU_PROBE = """() => {
    window.__contextMenus = [];
    window.addEventListener('contextmenu', e => {
        setTimeout(() => window.__contextMenus.push({tag: e.target.tagName, prevented: e.defaultPrevented}), 0);
    }, true);
}"""


@pytest.mark.parametrize("frontend", sorted(FRONTEND_PATHS))
def test_clicks_reach_the_kernel_and_masks_reach_the_canvas(
    jupyter_server: tuple[str, Path], frontend: str
) -> None:
    from playwright.sync_api import sync_playwright

    needs = {"notebook7": "notebook", "voila": "voila"}.get(frontend)
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{frontend} needs the {needs!r} package (pip install 'sam-server[test]')")
    url_template, root = jupyter_server
    url = url_template.format(path=FRONTEND_PATHS[frontend])
    ARTIFACTS.mkdir(exist_ok=True)
    state_file = root / "state.json"

    def state() -> dict[str, Any]:
        return json.loads(state_file.read_text())

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1") else r.abort()
        )
        try:
            page.goto(url)
            page.evaluate(CONTEXT_MENU_PROBE)
            run_notebook(page, frontend)
            canvas = page.wait_for_selector(CANVAS, timeout=180_000)
            assert canvas is not None
            canvas.scroll_into_view_if_needed()
            wait_for(lambda: state()["image_id"], 180, "the embedding")
            ready = state()
            scale = ready["scale"]
            canvas_w, canvas_h = ready["canvas_size"]
            rect = canvas.evaluate(
                "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"
            )

            def expected_image_xy(client_x: int, client_y: int) -> tuple[float, float]:
                rel_x, rel_y = js_round(client_x - rect[0]), js_round(client_y - rect[1])
                return canvas_to_image(rel_x * canvas_w / rect[2], rel_y * canvas_h / rect[3], scale)

            # left click on the bright rectangle -> positive point, three candidates, overlay
            click_x, click_y = math.ceil(rect[0] + 0.55 * rect[2]), math.ceil(rect[1] + 0.5 * rect[3])
            page.mouse.click(click_x, click_y)
            first = wait_for(lambda: (s := state())["candidates"] and s, 60, "the first answer")
            assert len(first["points"]) == 1
            x, y, positive = first["points"][0]
            assert positive is True
            assert (x, y) == pytest.approx(expected_image_xy(click_x, click_y), abs=1e-6)

            def wait_for_overlay(points: list[list[Any]]) -> None:
                """The canvas shows the last returned mask, pixel for pixel (away from the drawn clicks)."""
                mask = np.load(root / "mask.npy")
                assert mask.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0])
                expected = shown_image_pixels(mask, scale=scale, canvas_size=(canvas_w, canvas_h))
                yy, xx = np.mgrid[0:canvas_h, 0:canvas_w] + 0.5
                away = np.ones_like(expected)
                for px, py in (image_to_canvas(p[0], p[1], scale) for p in points):
                    away &= (xx - px) ** 2 + (yy - py) ** 2 > (POINT_RADIUS + 3) ** 2
                assert expected[away].any(), "the returned mask shows nowhere on the canvas"

                def matches() -> bool:
                    shown = np.all(canvas_pixels(page)[..., :3] == CANDIDATE_COLOR, axis=-1)
                    return bool(np.array_equal(shown[away], expected[away]))

                wait_for(matches, 20, "the mask overlay on the canvas")

            wait_for_overlay(first["points"])
            page.screenshot(path=str(ARTIFACTS / f"widget_{frontend}_click.png"))

            # right click -> negative point, and no JupyterLab context menu
            right_x, right_y = math.ceil(rect[0] + 0.1 * rect[2]), math.ceil(rect[1] + 0.15 * rect[3])
            page.mouse.click(right_x, right_y, button="right")
            second = wait_for(lambda: len((s := state())["points"]) == 2 and s, 60, "the negative point")
            x2, y2, positive2 = second["points"][1]
            assert positive2 is False
            assert (x2, y2) == pytest.approx(expected_image_xy(right_x, right_y), abs=1e-6)
            time.sleep(0.5)
            assert page.locator(".lm-Menu").count() == 0
            assert page.evaluate("window.__contextMenus") == [{"tag": "CANVAS", "prevented": True}]
            page.screenshot(path=str(ARTIFACTS / f"widget_{frontend}_right_click.png"))
            page.locator(".jp-OutputArea-output").first.screenshot(
                path=str(ARTIFACTS / f"widget_{frontend}.png")
            )
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
        finally:
            browser.close()
