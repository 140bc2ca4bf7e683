"""A real Label Studio 1.23 and a real model server for the end-to-end tests.

Installs Label Studio into ``.venv-ls`` (``scripts/install_labelstudio.sh``,
idempotent), starts it on 127.0.0.1 with a preset user and token
(``scripts/start_labelstudio.sh``), and starts the model server
(``tests/sam_plugin/e2e_model_server.py``: the real server app with the plugin
mounted under ``/ls``) with default settings. Both are started once per test
session (fixtures in ``conftest.py``) and stopped with everything they spawned.
Model: ``$SAM_E2E_MODEL``, else ``demo`` when its weights exist, else a tiny
random model.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, ImageDraw

from backend.client.http_client import SamClient

REPO = Path(__file__).resolve().parents[2]
LS_VENV = REPO / ".venv-ls"
USER, PASSWORD, TOKEN = "admin@example.com", "e2e-password-1", "e2e-legacy-token-0123456789"
ML_USER, ML_PASSWORD = "label-studio", "e2e-ml-backend-password"
"""The basic auth of the ML backend (Label Studio's model settings, the plugin's BASIC_AUTH_*)."""
W, H = 320, 200


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Wait until ``url`` answers 200, or fail with the end of the process's log."""
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


def stop_process(process: subprocess.Popen) -> None:
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
    """A picture with three flat shapes on a grey background (non-square, ``W x H``)."""
    image = Image.new("RGB", (W, H), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 40, 110, 120), fill=(220, 40, 40))
    draw.rectangle((150, 30, 230, 90), fill=(40, 60, 220))
    draw.polygon([(200, 180), (300, 180), (250, 110)], fill=(40, 180, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def touching_shapes_png() -> bytes:
    """A blue disc with a blue bar touching it (``W x H``): one click on the disc may take both.

    The disc is centred at (80, 90) with radius 40; the bar spans x 115..175, y 70..110.
    """
    image = Image.new("RGB", (W, H), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 50, 120, 130), fill=(40, 60, 220))
    draw.rectangle((115, 70, 175, 110), fill=(40, 60, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def model_name() -> str:
    """The model the e2e model server loads."""
    if os.environ.get("SAM_E2E_MODEL"):
        return os.environ["SAM_E2E_MODEL"]
    return (
        "demo" if (REPO / "backend" / "hub" / "packaged_weights" / "sam_demo.pt").exists() else "tiny-random"
    )


class LabelStudio:
    """A running Label Studio and its API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {TOKEN}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; anything but a 2xx fails the test with the answer."""
        response = self.session.request(method, self.url + path, timeout=120, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json()

    def new_project(
        self,
        title: str,
        label_config: str,
        image_png: bytes,
        ml_url: str,
        *,
        prelabel: bool = True,
        extra_params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A project with one task (``image_png``) and the model server connected as an interactive ML backend.

        Args:
            title: Project title.
            label_config: Labeling config XML.
            image_png: The task's image.
            ml_url: The ML backend URL (``<model server>/ls``).
            prelabel: Label Studio's "Use predictions to prelabel tasks" (``show_collab_predictions``).
                Off for interactive labeling: a task then opens without waiting for
                segment-everything, and a click lands on the image, not on a predicted region.
            extra_params: The model's "Extra params" (e.g. ``{"model": ...}``), sent with ``/setup``.

        Returns:
            ``{"id", "task", "ml", "model_version"}``.
        """
        created = self.call(
            "POST",
            "/api/projects",
            json={"title": title, "label_config": label_config, "show_collab_predictions": prelabel},
        )
        pid = created["id"]
        self.call(
            "POST", f"/api/projects/{pid}/import", files={"file": ("shapes.png", image_png, "image/png")}
        )
        tasks = self.call("GET", "/api/tasks", params={"project": pid})["tasks"]
        backend = self.call(
            "POST",
            "/api/ml",
            json={
                "project": pid,
                "url": ml_url,
                "title": "SAM",
                "is_interactive": True,
                # the "Connect model" dialog's Authentication: Basic Auth
                "auth_method": "BASIC_AUTH",
                "basic_auth_user": ML_USER,
                "basic_auth_pass": ML_PASSWORD,
                **({"extra_params": extra_params} if extra_params is not None else {}),
            },
        )
        assert backend["state"] == "CO", backend  # connected: /health and /setup answered
        self.authorize_ml_webhook(pid, ml_url)
        return {
            "id": pid,
            "task": tasks[0]["id"],
            "ml": backend["id"],
            "model_version": backend["model_version"],
        }

    def authorize_ml_webhook(self, project: int, ml_url: str) -> None:
        """Give the webhook Label Studio created for the ML backend the basic-auth header.

        Label Studio sends annotations to ``<ml_url>/webhook`` through a
        project webhook that does not carry the model settings' basic auth;
        a person adds the header under Settings -> Webhooks, as here.
        """
        url = ml_url.rstrip("/") + "/webhook"
        hooks = self.call("GET", "/api/webhooks/", params={"project": project})
        [hook] = [h for h in hooks if h["url"] == url]
        token = base64.b64encode(f"{ML_USER}:{ML_PASSWORD}".encode()).decode()
        self.call(
            "PATCH", f"/api/webhooks/{hook['id']}/", json={"headers": {"Authorization": f"Basic {token}"}}
        )


def start_label_studio(workdir: Path) -> Iterator[LabelStudio]:
    """Install (once) and run Label Studio; stops it when the generator closes."""
    install = subprocess.run(
        [str(REPO / "scripts" / "install_labelstudio.sh"), str(LS_VENV)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if install.returncode != 0:
        pytest.skip(f"Label Studio could not be installed (offline?): {install.stderr[-500:]}")
    port = free_port()
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
        wait_http(f"http://127.0.0.1:{port}/health", process, log, timeout_s=600)
        yield LabelStudio(f"http://127.0.0.1:{port}")
    finally:
        stop_process(process)


def start_model_server(
    workdir: Path,
    label_studio: LabelStudio,
    *,
    models: list[str] | None = None,
    env: dict[str, str] | None = None,
    log_name: str = "model-server.log",
) -> Iterator[str]:
    """Run the model server (plugin under ``/ls``); yields its URL once every model is loaded.

    Args:
        workdir: The session's folder (logs, the dataset folder).
        label_studio: The Label Studio the plugin fetches task images from.
        models: ``--model`` values (the first is the default); default: :func:`model_name`.
        env: Plugin settings on top of the defaults (e.g. ``SAM_PREANNOTATE``).
        log_name: The server's log file in ``workdir``.
    """
    port = free_port()
    log = workdir / log_name
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "SAM_DATASET_DIR": str(workdir / "dataset"),
        # with a Label Studio key the plugin requires the basic auth Label Studio is given
        "BASIC_AUTH_USER": ML_USER,
        "BASIC_AUTH_PASS": ML_PASSWORD,
        **(env or {}),
    }
    command = [sys.executable, str(Path(__file__).with_name("e2e_model_server.py")), "--port", str(port)]
    for model in models or [model_name()]:
        command += ["--model", model]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process, log, timeout_s=300)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not all_ready(url) and time.monotonic() < deadline:
            time.sleep(1)
        yield url
    finally:
        stop_process(process)


def all_ready(url: str) -> bool:
    """Whether the model server at ``url`` has loaded every model it serves."""
    try:
        return all(model.get("ready") for model in SamClient(url).models())
    except Exception:  # still starting
        return False


SAM2_E2E = "sam2-tiny"
"""The name of the e2e model server's second model: a random SAM 2.1 hiera_t at a 256-pixel input."""

SAM3_E2E = "sam3-tiny"
"""The name of the tiny random SAM 3 of the concepts server."""

CONCEPTS_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="mask" toName="image">
    <Label value="Object" background="#FF0000"/>
    <Label value="Thing" background="#00AA00"/>
  </BrushLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="Object" smart="true" background="#FFA500"/>
    <Label value="Background" smart="true" background="#0000FF"/>
  </RectangleLabels>
  <TextArea name="concept" toName="image" placeholder="a concept, e.g. car"/>
</View>"""
"""A labeling config for concepts: two output labels, smart boxes (exemplars), a text box."""

CONCEPTS = {"Object": {"prompt": "shape", "threshold": 0.0}, "Thing": {"threshold": 0.0}}
"""``SAM_CONCEPTS`` of the concepts server: thresholds 0 keep every instance of the random SAM 3."""

CONCEPT_THRESHOLD = 0.2495
"""``SAM_CONCEPT_THRESHOLD`` of the concepts server, for what is typed or boxed on the labeling page.

The random SAM 3 scores each of its 8 instances close to 0.25; above this, a
handful are kept (4 for ``cat`` on :func:`shapes_png`), so the page stays light.
Batch concepts use :data:`CONCEPTS`' own thresholds.
"""


def start_concepts_server(workdir: Path, label_studio: LabelStudio) -> Iterator[str]:
    """A model server with ``SAM_PREANNOTATE=concepts``: the e2e model (default) and a tiny SAM 3 (:data:`SAM3_E2E`).

    Interactive concepts keep instances above :data:`CONCEPT_THRESHOLD`.
    """
    pytest.importorskip("transformers", minversion="5")
    from tests.inference.sam3.tiny_sam3 import save_tiny_sam3

    folder = workdir / "tiny-sam3"
    if not folder.exists():
        save_tiny_sam3(folder)
    yield from start_model_server(
        workdir,
        label_studio,
        models=[model_name(), f"{SAM3_E2E}={folder}"],
        env={
            "SAM_PREANNOTATE": "concepts",
            "SAM_CONCEPTS": json.dumps(CONCEPTS),
            "SAM_CONCEPT_THRESHOLD": str(CONCEPT_THRESHOLD),
        },
        log_name="concepts-model-server.log",
    )
