"""The bad-image corpus through ``POST /v1/images``: Flask's test client and a real ``sam-server``."""

from __future__ import annotations

import pytest
import requests

from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import picture, png_bytes
from tests.support.bad_images import CorpusImage, bad_image_corpus

CORPUS = bad_image_corpus()
GOOD = png_bytes(picture(seed=2))


def _check(item: CorpusImage, status: int, body: dict) -> None:
    if item.accept:
        assert status == 200, (item.name, body)
        assert (body["width"], body["height"]) == (item.width, item.height), item.name
        assert len(body["image_id"]) == 64
    else:
        assert (status, body.get("error")) == (item.status, item.code), (item.name, body)
        assert body["detail"]


@pytest.fixture(scope="module")
def http(make_app):
    return make_app(mount_plugin=False, max_body_mb=8).test_client()


@pytest.mark.parametrize("item", CORPUS, ids=[c.name for c in CORPUS])
def test_each_corpus_file_gets_its_expected_answer_and_the_server_keeps_serving(http, item):
    response = http.post("/v1/images", data=item.data, content_type="application/octet-stream")
    _check(item, response.status_code, response.get_json())
    if item.accept:  # the accepted image can be prompted, and masks come back at its upright size
        center = [[item.width / 2, item.height / 2]]
        answer = http.post(
            "/v1/predict", json={"image_id": response.get_json()["image_id"], "points": center, "labels": [1]}
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_json()["objects"][0]["masks"][0]["segmentation"]["size"] == [
            item.height,
            item.width,
        ]
    good = http.post("/v1/images", data=GOOD)
    assert good.status_code == 200
    assert (
        http.post(
            "/v1/predict", json={"image_id": good.get_json()["image_id"], "box": [5, 5, 40, 30]}
        ).status_code
        == 200
    )


@pytest.mark.slow
def test_the_corpus_against_a_real_server_process(tiny_checkpoint):
    server = ServerProcess(
        "--model", str(tiny_checkpoint), "--device", "cpu", "--no-plugins", "--log-level", "WARNING"
    )
    server.start(timeout=120)
    try:
        with requests.Session() as session:
            good_id = session.post(f"{server.url}/v1/images", data=GOOD, timeout=60).json()["image_id"]
            for item in CORPUS:
                response = session.post(
                    f"{server.url}/v1/images",
                    data=item.data,
                    timeout=60,
                    headers={"Content-Type": "application/octet-stream"},
                )
                _check(item, response.status_code, response.json())
                after = session.post(
                    f"{server.url}/v1/predict",
                    json={"image_id": good_id, "points": [[10, 10]], "labels": [1]},
                    timeout=60,
                )
                assert after.status_code == 200, (item.name, after.text)
            assert server.process is not None and server.process.poll() is None
    finally:
        server.stop()
