"""End to end: a real Label Studio 1.23 talks to the model server's /ls plugin.

Installs Label Studio into ``.venv-ls`` (``scripts/install_labelstudio.sh``,
idempotent), starts it on 127.0.0.1 with a preset user and token
(``scripts/start_labelstudio.sh``), starts the
model server (``tests/sam_plugin/e2e_model_server.py``: the real server app
with the plugin mounted under ``/ls``), then drives Label Studio's API:
interactive requests (a click, two boxes, a negative click) whose brush masks
must equal, pixel for pixel, what the model server answers for the same
prompt in pixels; batch predictions stored with scores and the model version;
an annotation whose webhook makes ``fit()`` store it.

Screenshots of the running Label Studio (headless Chromium) go to
``$SAM_E2E_SCREENSHOTS`` (e.g. ``docs/images``) when it is set.
Model: ``$SAM_E2E_MODEL``, else ``demo`` when its weights exist, else a tiny
random model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from backend.client.http_client import SamClient
from backend.formats.mask_codecs import from_brush_rle
from sam_plugin.label_config import EXAMPLE_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
LS_VENV = REPO / ".venv-ls"
USER, PASSWORD, TOKEN = "admin@example.com", "e2e-password-1", "e2e-legacy-token-0123456789"
W, H = 320, 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not up after {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop a process we started in its own session, with everything it spawned."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def shapes_png() -> bytes:
    """A picture with three flat shapes on a grey background (non-square)."""
    image = Image.new("RGB", (W, H), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 40, 110, 120), fill=(220, 40, 40))
    draw.rectangle((150, 30, 230, 90), fill=(40, 60, 220))
    draw.polygon([(200, 180), (300, 180), (250, 110)], fill=(40, 180, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _model_name() -> str:
    if os.environ.get("SAM_E2E_MODEL"):
        return os.environ["SAM_E2E_MODEL"]
    return "demo" if (REPO / "backend" / "weights" / "sam_demo.pt").exists() else "tiny-random"


class LabelStudio:
    """A running Label Studio and its API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {TOKEN}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=120, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ls-e2e")


@pytest.fixture(scope="module")
def label_studio(workdir: Path) -> Iterator[LabelStudio]:
    install = subprocess.run(
        [str(REPO / "scripts" / "install_labelstudio.sh"), str(LS_VENV)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if install.returncode != 0:
        pytest.skip(f"Label Studio could not be installed (offline?): {install.stderr[-500:]}")
    port = _free_port()
    log = workdir / "label-studio.log"
    env = {
        **os.environ,
        "LS_VENV": str(LS_VENV),
        "LABEL_STUDIO_USERNAME": USER,
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
    }
    # --internal-host 127.0.0.1 --enable-legacy-api-token, ML_BLOCK_LOCAL_IP=false, SSRF_PROTECTION_ENABLED=false
    command = [str(REPO / "scripts" / "start_labelstudio.sh"), str(port), str(workdir / "ls-data")]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", process, log, timeout_s=600)
        yield LabelStudio(f"http://127.0.0.1:{port}")
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def model_server(workdir: Path, label_studio: LabelStudio) -> Iterator[str]:
    port = _free_port()
    log = workdir / "model-server.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "SAM_DATASET_DIR": str(workdir / "dataset"),
        "SAM_AUTOMASK_PARAMS": json.dumps(
            {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        ),
    }
    command = [
        sys.executable,
        str(Path(__file__).with_name("e2e_model_server.py")),
        "--port",
        str(port),
        "--model",
        _model_name(),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}/ls/health", process, log, timeout_s=300)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not SamClient(url).ready() and time.monotonic() < deadline:
            time.sleep(1)
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def project(label_studio: LabelStudio, model_server: str) -> dict[str, Any]:
    created = label_studio.call(
        "POST", "/api/projects", json={"title": "SAM e2e", "label_config": EXAMPLE_CONFIG}
    )
    pid = created["id"]
    label_studio.call(
        "POST", f"/api/projects/{pid}/import", files={"file": ("shapes.png", shapes_png(), "image/png")}
    )
    tasks = label_studio.call("GET", "/api/tasks", params={"project": pid})["tasks"]
    backend = label_studio.call(
        "POST",
        "/api/ml",
        json={"project": pid, "url": f"{model_server}/ls", "title": "SAM", "is_interactive": True},
    )
    assert backend["state"] == "CO", backend  # connected: /health and /setup answered
    return {"id": pid, "task": tasks[0]["id"], "ml": backend["id"], "model_version": backend["model_version"]}


def _interactive(
    label_studio: LabelStudio, project: dict[str, Any], results: list[dict[str, Any]]
) -> list[dict]:
    answer = label_studio.call(
        "POST",
        f"/api/ml/{project['ml']}/interactive-annotating",
        json={"task": project["task"], "context": {"result": results}},
    )
    assert "errors" not in answer, answer
    return answer["data"]["result"]


def _keypoint(x_pct: float, y_pct: float, label: str = "Object", positive: bool = True) -> dict[str, Any]:
    return {
        "id": f"k{x_pct}",
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "is_positive": positive,
        "origin": "manual",
        "value": {"x": x_pct, "y": y_pct, "width": 0.5, "keypointlabels": [label]},
    }


def _rectangle(x: float, y: float, w: float, h: float) -> dict[str, Any]:
    return {
        "id": f"r{x}",
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["Object"]},
    }


def _decode(region: dict[str, Any]) -> np.ndarray:
    assert region["type"] == "brushlabels" and region["value"]["format"] == "rle"
    return from_brush_rle(region["value"]["rle"], region["original_height"], region["original_width"])


def _server_masks(model_server: str, **prompt: Any) -> list[tuple[np.ndarray, float]]:
    """The model server's best mask and its score per object, for a prompt in pixels."""
    client = SamClient(model_server)
    image_id = client.add_image(shapes_png()).image_id
    return [(obj.best, float(obj.scores[0])) for obj in client.predict(image_id, **prompt)]


def test_click_gives_the_model_servers_mask(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    # 21.875 % of 320 = 70 px, 50 % of 200 = 100 px: exact in binary floating point
    [region] = _interactive(label_studio, project, [_keypoint(21.875, 50.0)])
    [(expected, score)] = _server_masks(model_server, points=[[70.0, 100.0]], labels=[1], multimask=True)
    np.testing.assert_array_equal(_decode(region), expected)
    assert region["value"]["brushlabels"] == ["Object"]
    assert region["score"] == pytest.approx(score)


def test_two_boxes_give_the_model_servers_masks(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    boxes = [_rectangle(6.25, 12.5, 31.25, 50.0), _rectangle(43.75, 12.5, 31.25, 37.5)]
    regions = _interactive(label_studio, project, boxes)
    expected = _server_masks(
        model_server, boxes=[[20.0, 25.0, 120.0, 125.0], [140.0, 25.0, 240.0, 100.0]], multimask=False
    )
    assert len(regions) == 2
    for region, (mask, score) in zip(regions, expected, strict=True):
        np.testing.assert_array_equal(_decode(region), mask)
        assert region["score"] == pytest.approx(score)


def test_negative_click_gives_the_model_servers_mask(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    clicks = [_keypoint(21.875, 50.0), _keypoint(62.5, 40.0, label="Background")]
    [region] = _interactive(label_studio, project, clicks)
    [(expected, score)] = _server_masks(
        model_server, points=[[70.0, 100.0], [200.0, 80.0]], labels=[1, 0], multimask=False
    )
    np.testing.assert_array_equal(_decode(region), expected)
    assert region["score"] == pytest.approx(score)


def test_batch_predictions_are_stored_with_scores_and_model_version(
    label_studio: LabelStudio, project: dict
) -> None:
    label_studio.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project["id"]},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    predictions = label_studio.call("GET", "/api/predictions", params={"task": project["task"]})
    assert predictions, "no prediction was stored"
    [prediction] = predictions
    assert prediction["model_version"] == project["model_version"] and prediction["model_version"].startswith(
        "sam-"
    )
    assert prediction["result"], "segment-everything returned no region"
    assert prediction["score"] is not None
    assert all(isinstance(region["score"], float) for region in prediction["result"])


def test_annotation_webhook_stores_it_for_training(
    label_studio: LabelStudio, project: dict, workdir: Path, model_server: str
) -> None:
    [region] = _interactive(label_studio, project, [_keypoint(21.875, 50.0)])
    annotation = label_studio.call(
        "POST", f"/api/tasks/{project['task']}/annotations", json={"result": [region]}
    )
    path = (
        workdir
        / "dataset"
        / "annotations"
        / f"project{project['id']}-task{project['task']}-annotation{annotation['id']}.json"
    )
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    record = json.loads(path.read_text())
    assert len(record["masks"]) == 1 and (record["width"], record["height"]) == (W, H)
    assert record["masks"][0]["prompts"]["points"] == [[70.0, 100.0]]
    assert (workdir / "dataset" / record["image"]).exists()


def test_precompute_command_registers_every_task_image(
    label_studio: LabelStudio, project: dict, model_server: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "sam_plugin.cli",
        "precompute",
        "--project",
        str(project["id"]),
        "--model-server",
        model_server,
        "--label-studio-url",
        label_studio.url,
        "--api-key",
        TOKEN,
        "--no-progress",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 embeddings computed, 0 tasks failed" in done.stdout


def test_screenshots(label_studio: LabelStudio, project: dict) -> None:
    """Headless Chromium screenshots of the project (for docs/labelstudio.md)."""
    target = os.environ.get("SAM_E2E_SCREENSHOTS")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not target:
        pytest.skip("set SAM_E2E_SCREENSHOTS=docs/images to write screenshots")
    if chromium is None:
        pytest.skip("no chromium on PATH")
    from playwright.sync_api import sync_playwright

    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{label_studio.url}/user/login/")
        page.fill("input[name=email]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{label_studio.url}/projects/{project['id']}/settings/ml")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "labelstudio-ml-backend.png"))
        page.goto(f"{label_studio.url}/projects/{project['id']}/data?task={project['task']}")
        page.wait_for_timeout(6000)
        page.screenshot(path=str(out / "labelstudio-labeling.png"))
        browser.close()
    assert (out / "labelstudio-labeling.png").stat().st_size > 10_000
