"""POST /v1/automask (cached per image and parameters) and text prompts in /v1/predict."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flask import Flask

from backend.formats.mask_codecs import from_coco_rle
from backend.inference.automask import AutomaskGenerator
from backend.serving.app import create_app
from backend.serving.service import SamService
from tests.serving.fake_ranker import FakeRanker
from tests.serving.tiny_model import make_config, picture, png_bytes

PARAMS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


@pytest.fixture
def ranker_app(tiny_sam) -> Iterator[tuple[Flask, list[FakeRanker]]]:
    made: list[FakeRanker] = []

    def factory(device: str) -> FakeRanker:
        made.append(FakeRanker(device))
        return made[-1]

    config = make_config(tiny_sam)
    service = SamService(config, text_prompter_factory=factory).start()
    app = create_app(config, service=service)
    assert service.wait_ready(30)
    yield app, made
    service.close()


def test_automask_records_equal_the_generator_and_are_cached(app, client, image_id, tiny_sam):
    answer = client.post("/v1/automask", json={"image_id": image_id, **PARAMS})
    assert answer.status_code == 200, answer.json
    expected = AutomaskGenerator(tiny_sam, **PARAMS).generate(picture())
    records = answer.json["records"]
    assert len(records) == len(expected) > 0
    for got, want in zip(records, expected, strict=True):
        np.testing.assert_array_equal(from_coco_rle(got["segmentation"]), from_coco_rle(want["segmentation"]))
        assert got["area"] == want["area"]
    service = app.extensions["sam_service"]
    hits = service.cache_stats()["automask"].hits
    assert client.post("/v1/automask", json={"image_id": image_id, **PARAMS}).json["records"] == records
    assert service.cache_stats()["automask"].hits == hits + 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image_id": "0" * 64}, 404, "not_found"),
        ({"image_id": "ID", "points_per_side": 0}, 400, "invalid_input"),
        ({"image_id": "ID", "pred_iou_thresh": 2.0}, 400, "invalid_input"),
        ({"image_id": "ID", "unknown_knob": 1}, 400, "invalid_input"),
        ({"image_id": "ID", "points_per_side": True}, 400, "invalid_input"),
        ({"image_id": "ID", "points_per_side": "4"}, 400, "invalid_input"),
        ({"image_id": "ID", "points_per_side": 4.0}, 400, "invalid_input"),
        ({"image_id": "ID", "box_nms_thresh": "0.5"}, 400, "invalid_input"),
    ],
)
def test_bad_automask_requests_then_good(client, image_id, body, status, code):
    body = {k: (image_id if v == "ID" else v) for k, v in body.items()}
    response = client.post("/v1/automask", json=body)
    assert response.status_code == status and response.json["error"] == code
    assert client.post("/v1/automask", json={"image_id": image_id, **PARAMS}).status_code == 200


def test_text_prompt_returns_top_three_as_one_object(ranker_app):
    app, made = ranker_app
    client = app.test_client()
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    client.post("/v1/automask", json={"image_id": image_id, **PARAMS})  # text ranks these records
    body = {
        "image_id": image_id,
        "text": "a bright square",
        "box": [5, 5, 60, 40],
        "points": [[20, 20]],
        "labels": [1],
    }
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == 200, answer.json
    [obj] = answer.json["objects"]
    assert [m["score"] for m in obj["masks"]] == pytest.approx([0.9, 0.8, 0.7])
    assert obj["labels"] == ["a bright square"] * 3 and obj["logits_id"] is None
    [ranker] = made
    call = ranker.calls[0]
    assert call["box"] == [5, 5, 60, 40] and call["points"] == [[20, 20]] and call["labels"] == [1]
    assert call["shape"] == (60, 80, 3) and call["n"] > 0
    areas = [m["area"] for m in obj["masks"]]
    assert areas == sorted(areas, reverse=True)


def test_text_prompt_reuses_automask_records(ranker_app):
    app, made = ranker_app
    client = app.test_client()
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    client.post("/v1/automask", json={"image_id": image_id, **PARAMS})  # text ranks these records
    client.post("/v1/predict", json={"image_id": image_id, "text": "one"})
    client.post("/v1/predict", json={"image_id": image_id, "text": "two"})
    assert app.extensions["sam_service"].cache_stats()["automask"].hits == 2
    assert len(made) == 1 and len(made[0].calls) == 2


def test_empty_text_is_refused(ranker_app):
    app, _ = ranker_app
    client = app.test_client()
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    client.post("/v1/automask", json={"image_id": image_id, **PARAMS})  # text ranks these records
    response = client.post("/v1/predict", json={"image_id": image_id, "text": "  "})
    assert response.status_code == 400 and response.json["error"] == "invalid_input"


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [0.0, 1.0], ids=["candidates", "no candidate passes"])
def test_text_without_clip_weights_is_503_with_the_reason(tiny_sam, tmp_path, threshold):
    """Also when segment-everything would keep no candidate: the weights are checked before it
    runs (such a prompt got 200 with no object after the whole run)."""
    from backend.inference.text import TextPrompter

    config = make_config(tiny_sam)
    service = SamService(
        config, text_prompter_factory=lambda device: TextPrompter(device=device, download_root=tmp_path)
    )
    app = create_app(config, service=service.start())
    try:
        assert service.wait_ready(30)
        client = app.test_client()
        image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
        params = {
            **PARAMS,
            "pred_iou_thresh": threshold,
        }  # the text prompt reuses the image's last parameters
        records = client.post("/v1/automask", json={"image_id": image_id, **params}).json["records"]
        assert bool(records) == (threshold == 0.0)
        response = client.post("/v1/predict", json={"image_id": image_id, "text": "square"})
        assert response.status_code == 503 and response.json["error"] == "weights_unavailable"
        detail = response.json["detail"]  # names the file and its URL; the folder stays in the server's log
        assert "ViT-B-32.pt" in detail and str(tmp_path) not in detail
        good = client.post("/v1/predict", json={"image_id": image_id, "box": [0, 0, 20, 20]})
        assert good.status_code == 200
    finally:
        service.close()
