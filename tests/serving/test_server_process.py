"""A real ``sam-server`` process on 127.0.0.1: gunicorn, token, bad input, graceful stop."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import requests
from pycocotools import mask as coco_mask

from backend.api.errors import SamServerError
from backend.client.http_client import SamClient
from backend.inference.predictor import SamPredictor
from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import build_tiny_sam, picture, png_bytes, save_tiny_checkpoint

pytestmark = pytest.mark.slow
TOKEN = "process-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    process = ServerProcess(
        "--model",
        str(checkpoint),
        "--device",
        "cpu",
        "--no-plugins",
        env={"SAM_TOKEN": TOKEN, "SAM_LOG_LEVEL": "WARNING"},
        token=TOKEN,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    return session


def test_health_is_open_and_everything_else_needs_the_token(server):
    assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "UP"}
    response = requests.get(f"{server.url}/v1/models", timeout=10)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_upload_predict_matches_in_process_predictor(server, http):
    info = http.post(f"{server.url}/v1/images", data=png_bytes(picture()), timeout=60).json()
    assert (info["width"], info["height"]) == (80, 60)
    body = {"image_id": info["image_id"], "points": [[30, 22]], "labels": [1]}
    [obj] = http.post(f"{server.url}/v1/predict", json=body, timeout=60).json()["objects"]
    predictor = SamPredictor(build_tiny_sam())
    predictor.set_image(picture())
    expected = predictor.predict(point_coords=[[30, 22]], point_labels=[1])
    for k, mask in enumerate(obj["masks"]):
        rle = {"size": mask["segmentation"]["size"], "counts": mask["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), expected.masks[0, k])


def test_bad_input_gets_4xx_and_the_server_keeps_serving(server, http):
    corrupt = http.post(f"{server.url}/v1/images", data=b"garbage", timeout=30)
    assert corrupt.status_code == 400 and corrupt.json()["error"] == "invalid_image"
    nan = http.post(
        f"{server.url}/v1/predict",
        data=b'{"image_id": "x", "box": [NaN, 0, 1, 1]}',
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 400 and nan.json()["error"] == "invalid_json"
    missing = http.post(
        f"{server.url}/v1/predict", json={"image_id": "0" * 64, "box": [0, 0, 1, 1]}, timeout=30
    )
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert http.get(f"{server.url}/ready", timeout=10).json()["ready"] is True


def test_metrics_are_prometheus_text(server, http):
    response = http.get(f"{server.url}/metrics", timeout=10)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "sam_http_requests_total" in response.text and "sam_queue_depth" in response.text


def test_sam_client_sends_the_token(server):
    with SamClient(server.url, token=TOKEN) as client:
        assert client.add_image(picture()).width == 80
    with SamClient(server.url, token="wrong") as client, pytest.raises(SamServerError) as error:
        client.models()
    assert error.value.status == 401 and "wrong access token" in error.value.detail
