"""Finding 8: the Label Studio plugin under ``/ls`` of a real ``sam-server`` on 127.0.0.1.

* With a Label Studio key configured, ``/ls`` needs the basic auth of Label
  Studio's model settings (or the server's token as its password).
* The image fetcher asks the Label Studio host for image paths only, never
  its API, nor absolute local-file paths.
* A download has one deadline: a host sending a byte every 2 s is cut off.
* The webhook checks brush sizes before decoding any RLE.
* Malformed task URLs get 400, not 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sam_plugin.label_config import EXAMPLE_CONFIG
from tests.reliability.local_http import LocalImageHost
from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import picture, png_bytes

pytestmark = pytest.mark.slow
KEY = "label-studio-key"
USER, PASSWORD = "label-studio", "ml-backend-password"
FETCH_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def label_studio() -> Iterator[LocalImageHost]:
    """Plays Label Studio's file host: one image, one slow image (a byte every 2 s)."""
    host = LocalImageHost()
    host.files["/data/upload/1/a.png"] = png_bytes(picture())
    host.trickle["/data/upload/1/slow.png"] = b"\x89PNG" + b"\x00" * 26
    host.start()
    yield host
    host.stop()


def _plugin_server(checkpoint: Any, label_studio: LocalImageHost, tmp_path: Any, **env: str) -> ServerProcess:
    base = {
        "LABEL_STUDIO_URL": label_studio.base_url,
        "LABEL_STUDIO_API_KEY": KEY,
        "SAM_FETCH_TIMEOUT": str(FETCH_TIMEOUT_S),
        "SAM_DATASET_DIR": str(tmp_path / "dataset"),
        "SAM_AUTOMASK_PARAMS": '{"points_per_side": 4}',
    }
    server = ServerProcess(
        "--model", str(checkpoint), "--device", "cpu", env={**base, **env}, token=env.get("SAM_TOKEN")
    )
    server.start(timeout=180)
    return server


@pytest.fixture(scope="module")
def server(tiny_checkpoint, label_studio, tmp_path_factory) -> Iterator[ServerProcess]:
    """The plugin with a Label Studio key and the basic-auth pair Label Studio is given."""
    process = _plugin_server(
        tiny_checkpoint,
        label_studio,
        tmp_path_factory.mktemp("plugin"),
        BASIC_AUTH_USER=USER,
        BASIC_AUTH_PASS=PASSWORD,
    )
    yield process
    process.stop()


def _predict(server: ServerProcess, image: str, **kwargs: Any) -> requests.Response:
    body = {"tasks": [{"id": 1, "data": {"image": image}}], "project": "1.1", "label_config": EXAMPLE_CONFIG}
    return requests.post(f"{server.url}/ls/predict", json=body, auth=(USER, PASSWORD), timeout=60, **kwargs)


def test_with_a_label_studio_key_and_no_credentials_every_plugin_route_answers_401(
    tiny_checkpoint, label_studio, tmp_path
):
    server = _plugin_server(tiny_checkpoint, label_studio, tmp_path)
    try:
        for method, path in (
            ("GET", "/ls/health"),
            ("GET", "/ls/"),
            ("POST", "/ls/setup"),
            ("POST", "/ls/predict"),
        ):
            for auth in (None, ("anyone", "anything")):
                response = requests.request(method, server.url + path, json={}, auth=auth, timeout=30)
                assert response.status_code == 401, (method, path, auth)
                assert "BASIC_AUTH_USER" in response.json()["detail"]
                assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
        assert label_studio.seen == []
    finally:
        server.stop()


def test_the_servers_token_as_basic_auth_password_also_opens_the_plugin(
    tiny_checkpoint, label_studio, tmp_path
):
    server = _plugin_server(tiny_checkpoint, label_studio, tmp_path, SAM_TOKEN="server-token")
    try:
        body = {"project": "1.1", "schema": EXAMPLE_CONFIG}
        assert requests.post(f"{server.url}/ls/setup", json=body, timeout=30).status_code == 401
        ok = requests.post(
            f"{server.url}/ls/setup", json=body, auth=("label-studio", "server-token"), timeout=30
        )
        assert ok.status_code == 200, ok.text
    finally:
        server.stop()


def test_the_basic_auth_pair_opens_the_plugin_and_nothing_else_does(server):
    body = {"project": "1.1", "schema": EXAMPLE_CONFIG}
    for auth in (None, (USER, "wrong"), ("other", PASSWORD)):
        assert requests.post(f"{server.url}/ls/setup", json=body, auth=auth, timeout=30).status_code == 401
    assert (
        requests.post(f"{server.url}/ls/setup", json=body, auth=(USER, PASSWORD), timeout=30).status_code
        == 200
    )
    assert _predict(server, "/data/upload/1/a.png").status_code == 200


@pytest.mark.parametrize(
    "reference",
    [
        "/api/projects/",
        "/api/projects/1/export?exportType=JSON",
        "{ls}/api/current-user/whoami",
        "{ls}/data/upload",
        "/data/local-files/?d=/etc/passwd",
        "/data/local-files/?d=%2Fetc%2Fpasswd",
        "/data/local-files/?d=C:/Windows/win.ini",
        "/data/local-files/?d=~/secrets.png",
        "/storage-data/uploaded/?filepath=/etc/passwd",
    ],
)
def test_only_label_studio_image_paths_are_fetched(server, label_studio, reference):
    before = len(label_studio.seen)
    response = _predict(server, reference.format(ls=label_studio.base_url))
    assert _task_refused(response) == "image_url_refused"
    assert len(label_studio.seen) == before, label_studio.seen[before:]


def _task_refused(response: requests.Response) -> str:
    """The error code of a batch answer's one task, which got no prediction (Label Studio
    stores none for an answer without ``result``; the other tasks of a batch keep theirs)."""
    assert response.status_code == 200, response.text
    [answer] = response.json()["results"]
    assert "result" not in answer and answer["error"].startswith("task 1: "), answer
    return str(answer["code"])


def test_a_download_stops_at_its_deadline_when_the_host_sends_a_byte_every_2_s(server, label_studio):
    start = time.monotonic()
    response = _predict(server, "/data/upload/1/slow.png")
    elapsed = time.monotonic() - start
    print(
        f"a byte every 2 s: answered {response.status_code} after {elapsed:.1f} s (deadline {FETCH_TIMEOUT_S:g} s)"
    )
    assert _task_refused(response) == "image_fetch_timeout"
    assert elapsed < FETCH_TIMEOUT_S + 3.0, elapsed  # 30 bytes at one per 2 s would take a minute


@pytest.mark.parametrize(
    "reference",
    [
        "http://127.0.0.1:99999/data/upload/1/a.png",
        "http://127.0.0.1:abc/data/upload/1/a.png",
        "http://[::1/data/upload/1/a.png",
        "http://[not-an-address]/a.png",
        "//[::1/data/upload/1/a.png",
    ],
)
def test_malformed_task_urls_are_refused_for_their_task(server, reference):
    assert _task_refused(_predict(server, reference)) == "invalid_input"


def _webhook(server: ServerProcess, region: dict[str, Any]) -> tuple[requests.Response, float]:
    body = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1, "label_config": EXAMPLE_CONFIG},
        "task": {"id": 1, "data": {"image": "/data/upload/1/a.png"}},
        "annotation": {"id": 7, "result": [region]},
    }
    start = time.monotonic()
    response = requests.post(f"{server.url}/ls/webhook", json=body, auth=(USER, PASSWORD), timeout=120)
    return response, time.monotonic() - start


def _brush(width: int, height: int, rle: list[int]) -> dict[str, Any]:
    return {
        "id": "r1",
        "type": "brushlabels",
        "from_name": "mask",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "value": {"format": "rle", "rle": rle, "brushlabels": ["Object"]},
    }


def test_the_webhook_checks_brush_sizes_before_decoding(server, label_studio):
    height, width = picture().shape[:2]
    header = list((width * height * 4).to_bytes(4, "big"))
    huge = header + [0b01010101] * 5_000_000  # about 15 MB of JSON; decoding it took 11 s of CPU
    response, seconds = _webhook(server, _brush(width, height, huge))
    print(f"webhook with a 5,000,000-value brush RLE: {response.status_code} after {seconds:.2f} s")
    assert response.status_code == 413 and "RLE values" in response.json()["detail"], response.text[:300]
    assert seconds < 5.0, seconds
    before = len(label_studio.seen)
    response, seconds = _webhook(
        server, _brush(100_000, 100_000, list((4 * 10**10 % 2**32).to_bytes(4, "big")) * 3)
    )
    assert response.status_code == 400 and "above the image limit" in response.json()["detail"]
    response, _ = _webhook(server, _brush(width, height, [0, 0, 0, 1, 0, 0, 0, 0]))
    assert response.status_code == 400 and "encodes 1 values" in response.json()["detail"]
    assert len(label_studio.seen) == before  # refused before the task image was fetched


def test_plugin_errors_reach_clients_without_reprs_or_server_paths():
    import os

    from flask import Flask

    from sam_plugin.blueprint import error_response
    from sam_plugin.image_fetcher import ImageFetchFailed

    home = os.path.expanduser("~")
    failure = ImageFetchFailed(
        "cannot download the task image from http://ls:8080/data/upload/1/a.png: HTTPConnectionPool(host='ls', "
        "port=8080): Max retries exceeded (Caused by NewConnectionError('<urllib3.connection.HTTPConnection "
        f"object at 0x7f3a2c1b9e50>: Failed to establish a new connection')); cache at {home}/.cache/x"
    )
    with Flask("t").app_context():
        response = error_response(failure)
    body = response.get_data(as_text=True)
    assert "object at 0x" not in body and home not in body and home not in response.status
    assert "http://ls:8080/data/upload/1/a.png" in body
