"""Real programs for the widget's browser tests and benchmark: a sam-server, Jupyter, headless Chromium.

Everything listens on 127.0.0.1 behind a random token; the browser aborts
every request that leaves 127.0.0.1. Used by ``tests/widget/test_browser.py``
and ``benchmarks/bench_widget.py --browser``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.widget.conftest import DEMO_WEIGHTS, tiny_sam

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CANVAS = ".jp-OutputArea-output canvas"
FRONTEND_PATHS = {
    "jupyterlab": "lab/tree/{name}",
    "notebook7": "notebooks/{name}",
    "voila": "voila/render/{name}",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (read errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_ok(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    import requests

    return requests.get(url, timeout=2).status_code == 200


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child process (kill it after 15 s)."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def can_run_browser() -> bool:
    """Debian's Chromium and Jupyter are installed."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    return Path(CHROMIUM).exists() and jupyter is not None


@contextmanager
def model_server(
    work: Path,
    *,
    log_name: str = "server.log",
    model: str | None = None,
    more_models: tuple[str, ...] = (),
    port: int | None = None,
    token: str | None = None,
) -> Iterator[tuple[str, str]]:
    """``(url, token)`` of a sam-server serving ``model`` (a name or a path), by default the demo
    model (a tiny random one when it is missing), and ``more_models`` (``--model`` values such
    as ``NAME=PATH``) after it; ``port`` and ``token`` (default: new ones) let a test restart
    the server where its clients expect it.

    Its CLIP folder is empty, so a text prompt fails the same way everywhere
    (no download, no weights found).
    """
    if model is not None:
        pass
    elif DEMO_WEIGHTS.is_file():
        model = "demo"
    else:
        from backend.hub import save_checkpoint

        sam = tiny_sam()
        model = str(work / "tiny.pt")
        save_checkpoint(
            model, model_state=sam.state_dict(), config=sam.config, meta={"note": "random, for tests"}
        )
    no_clip = work / "no-clip"
    no_clip.mkdir(exist_ok=True)
    port, token = port or free_port(), token or secrets.token_hex(16)
    cmd = [sys.executable, "-m", "backend.serving.cli", "--model", model, "--device", "cpu"]
    for more in more_models:
        cmd += ["--model", more]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-plugins", "--threads", "4"]
    env = dict(os.environ, SAM_TOKEN=token, PYTHONPATH=str(REPO), HOME=str(work), SAM_CLIP_ROOT=str(no_clip))
    with open(work / log_name, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and http_ok(f"{url}/health"), 120, "sam-server /health", every=0.2
        )
        yield url, token
    finally:
        stop(proc)


def write_notebook(path: Path, code: str) -> None:
    """A one-cell notebook with the python3 kernel."""
    import nbformat

    notebook = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    notebook.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, path)


@contextmanager
def jupyter_server(root: Path, work: Path, *, sam_url: str, sam_token: str) -> Iterator[str]:
    """A Jupyter server (JupyterLab, Notebook 7, Voila) on ``root``; yields the URL template.

    The template has ``{path}`` (see :data:`FRONTEND_PATHS`) and carries the
    token. Kernels see ``SAM_URL`` and ``SAM_TOKEN``.
    """
    settings = work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SAM_URL=sam_url,
        SAM_TOKEN=sam_token,
        JUPYTER_CONFIG_DIR=str(work / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(work / "jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "lab-workspaces"),
    )
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root"]
    cmd += [
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    cmd += [
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]
    cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
    with open(work / "lab.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and http_ok(f"{base}/api/status?token={token}"),
            120,
            "Jupyter server",
            every=0.2,
        )
        yield f"{base}/{{path}}?token={token}"
    finally:
        stop(proc)


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1280, 1000)) -> Iterator[Any]:
    """A Playwright page in headless Chromium that can reach 127.0.0.1 only."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1") else r.abort()
        )
        try:
            yield page
        finally:
            browser.close()


def run_notebook(page: Any, frontend: str) -> None:
    """Run the notebook's cells (Voila runs them by itself when the page opens)."""
    if frontend == "voila":
        return
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=120_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def canvas_pixels(page: Any) -> np.ndarray:
    """``hxwx4`` uint8 pixels of the widget's (composited) canvas element."""
    from PIL import Image

    url = page.evaluate(f"() => document.querySelector('{CANVAS}').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file the notebook writes atomically."""
    return dict(json.loads(path.read_text()))
