"""The HTTP API through Flask's test client: answers, every bad input, auth, metrics, OpenAPI."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from backend.formats.images import compute_image_id
from backend.inference.predictor import SamPredictor
from backend.serving.app import create_app
from tests.serving.tiny_model import make_config, picture, png_bytes

DOCS_OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
POINTS = [[30.0, 22.0], [50.0, 40.0]]
LABELS = [1, 0]


def _predictor(tiny_sam) -> SamPredictor:
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(picture())
    return predictor


def _rasterize_polygons(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Even-odd ray casting at pixel centres (independent of our codec); pixel (r, c) covers [c, c+1] x [r, r+1]."""
    py, px = np.mgrid[0:height, 0:width] + 0.5
    inside = np.zeros((height, width), dtype=bool)
    for ring in polygons:
        pts = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            if y1 == y2:
                continue
            crosses = (y1 > py) != (y2 > py)
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < x_at)
    return inside


def _decode(segmentation, fmt: str, height: int, width: int) -> np.ndarray:
    if fmt == "coco_rle":
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
        return coco_mask.decode(rle).astype(bool)
    if fmt == "png":
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(segmentation))).convert("L")) > 0
    return _rasterize_polygons(segmentation, height, width)


# ---------------------------------------------------------------- happy paths
def test_health_ready_models(client):
    assert client.get("/health").json == {"status": "UP"}
    assert client.get("/ready").json == {"ready": True, "model": "custom"}
    [model] = client.get("/v1/models").json["models"]
    assert model["ready"] and model["image_size"] == 128 and model["device"] == "cpu"


def test_upload_returns_pixel_hash_and_size(client, image_png):
    response = client.post("/v1/images", data=image_png)
    assert response.status_code == 200
    assert response.json == {"image_id": compute_image_id(picture()), "width": 80, "height": 60}
    assert client.get(f"/v1/images/{response.json['image_id']}").json["width"] == 80
    missing = client.get("/v1/images/" + "0" * 64)
    assert missing.status_code == 404 and missing.json["error"] == "not_found"


def test_same_picture_twice_computes_once(app, client, image_png):
    client.post("/v1/images", data=image_png)
    client.post("/v1/images", data=png_bytes(picture()))
    assert app.extensions["sam_service"].encoder_calls == 1


@pytest.mark.parametrize("fmt", ["coco_rle", "png", "polygon"])
def test_masks_equal_in_process_predictor(client, image_id, tiny_sam, fmt):
    expected = _predictor(tiny_sam).predict(point_coords=POINTS, point_labels=LABELS)
    body = {"image_id": image_id, "points": POINTS, "labels": LABELS, "format": fmt}
    answer = client.post("/v1/predict", json=body).json
    [obj] = answer["objects"]
    assert answer["model"] == "custom" and answer["timing_ms"] > 0 and obj["logits_id"]
    assert len(obj["masks"]) == 3
    for k, mask in enumerate(obj["masks"]):
        decoded = _decode(mask["segmentation"], fmt, 60, 80)
        if fmt == "polygon":
            assert np.mean(decoded != expected.masks[0, k]) <= 0.001
        else:
            np.testing.assert_array_equal(decoded, expected.masks[0, k])
        assert mask["score"] == pytest.approx(float(expected.scores[0, k]), abs=1e-6)
        assert mask["stability_score"] == pytest.approx(float(expected.stability_scores[0, k]), abs=1e-6)
        assert mask["area"] == int(expected.masks[0, k].sum())
    scores = [m["score"] for m in obj["masks"]]
    assert scores == sorted(scores, reverse=True)


def test_mask_bbox_is_xywh_of_the_mask(client, image_id):
    [obj] = client.post("/v1/predict", json={"image_id": image_id, "points": POINTS, "labels": LABELS}).json[
        "objects"
    ]
    for mask in obj["masks"]:
        decoded = _decode(mask["segmentation"], "coco_rle", 60, 80)
        ys, xs = np.nonzero(decoded)
        assert mask["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_boxes_give_one_object_each(client, image_id, tiny_sam):
    boxes = [[5.0, 5.0, 40.0, 30.0], [20.0, 10.0, 79.0, 59.0]]
    expected = _predictor(tiny_sam).predict(box=np.array(boxes))
    answer = client.post("/v1/predict", json={"image_id": image_id, "boxes": boxes}).json
    assert len(answer["objects"]) == 2
    for i, obj in enumerate(answer["objects"]):
        for k, mask in enumerate(obj["masks"]):
            np.testing.assert_array_equal(
                _decode(mask["segmentation"], "coco_rle", 60, 80), expected.masks[i, k]
            )


def test_refinement_with_logits_id_equals_predictor(client, image_id, tiny_sam):
    predictor = _predictor(tiny_sam)
    first = predictor.predict(point_coords=POINTS[:1], point_labels=[1])
    second = predictor.predict(
        point_coords=POINTS,
        point_labels=LABELS,
        mask_input=first.low_res_logits[:, :1],
        multimask_output=False,
    )
    logits_id = client.post(
        "/v1/predict", json={"image_id": image_id, "points": POINTS[:1], "labels": [1]}
    ).json["objects"][0]["logits_id"]
    body = {
        "image_id": image_id,
        "points": POINTS,
        "labels": LABELS,
        "mask_input": logits_id,
        "multimask": False,
    }
    [obj] = client.post("/v1/predict", json=body).json["objects"]
    assert len(obj["masks"]) == 1
    np.testing.assert_array_equal(
        _decode(obj["masks"][0]["segmentation"], "coco_rle", 60, 80), second.masks[0, 0]
    )


# ------------------------------------------------------------------ bad input
def _bomb_png() -> bytes:
    """A valid small PNG whose header claims 30000x30000 pixels."""
    data = bytearray(png_bytes(picture()))
    ihdr = struct.pack(">II", 30000, 30000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


BAD_PREDICT = [
    ("malformed json", "{not json", 400, "invalid_json"),
    ("json array", "[1, 2]", 400, "invalid_json"),
    ("NaN literal", '{"image_id": "ID", "points": [[NaN, 3]], "labels": [1]}', 400, "invalid_json"),
    ("Infinity literal", '{"image_id": "ID", "box": [0, 0, Infinity, 3]}', 400, "invalid_json"),
    ("overflow to inf", '{"image_id": "ID", "points": [[1e999, 3]], "labels": [1]}', 400, "invalid_input"),
    ("unknown image", {"image_id": "f" * 64, "points": [[1, 1]], "labels": [1]}, 404, "not_found"),
    ("point outside", {"image_id": "ID", "points": [[81, 10]], "labels": [1]}, 400, "invalid_input"),
    ("negative point", {"image_id": "ID", "points": [[-1, 10]], "labels": [1]}, 400, "invalid_input"),
    ("label count", {"image_id": "ID", "points": [[1, 1], [2, 2]], "labels": [1]}, 400, "invalid_input"),
    ("labels without points", {"image_id": "ID", "labels": [1]}, 400, "invalid_input"),
    ("bad label value", {"image_id": "ID", "points": [[1, 1]], "labels": [2]}, 400, "invalid_input"),
    ("point of 3 numbers", {"image_id": "ID", "points": [[1, 1, 1]], "labels": [1]}, 400, "invalid_input"),
    ("inverted box", {"image_id": "ID", "box": [40, 30, 10, 5]}, 400, "invalid_input"),
    ("box outside", {"image_id": "ID", "box": [0, 0, 100, 30]}, 400, "invalid_input"),
    (
        "box and boxes",
        {"image_id": "ID", "box": [0, 0, 10, 10], "boxes": [[0, 0, 10, 10]]},
        400,
        "invalid_input",
    ),
    ("empty boxes", {"image_id": "ID", "boxes": []}, 400, "invalid_input"),
    ("unknown format", {"image_id": "ID", "box": [0, 0, 10, 10], "format": "jpeg"}, 400, "invalid_input"),
    ("unknown logits_id", {"image_id": "ID", "mask_input": "nope"}, 404, "not_found"),
    ("no prompt", {"image_id": "ID"}, 400, "invalid_input"),
    ("unknown field", {"image_id": "ID", "box": [0, 0, 10, 10], "colour": 3}, 400, "invalid_input"),
    ("missing image_id", {"box": [0, 0, 10, 10]}, 400, "invalid_input"),
    ("string coordinates", {"image_id": "ID", "points": [["a", 1]], "labels": [1]}, 400, "invalid_input"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BAD_PREDICT, ids=[b[0] for b in BAD_PREDICT])
def test_bad_predict_then_good(client, image_id, name, body, status, code):
    if isinstance(body, str):
        response = client.post(
            "/v1/predict", data=body.replace("ID", image_id), content_type="application/json"
        )
    else:
        body = {k: (image_id if v == "ID" else v) for k, v in body.items()}
        response = client.post("/v1/predict", json=body)
    assert response.status_code == status, response.json
    assert response.json["error"] == code and response.json["detail"]
    good = client.post("/v1/predict", json={"image_id": image_id, "points": [[10, 10]], "labels": [1]})
    assert good.status_code == 200


BAD_IMAGES = [
    ("empty", b"", 400, "invalid_image"),
    ("corrupt", b"this is not an image at all", 400, "invalid_image"),
    ("truncated", png_bytes(picture())[:200], 400, "invalid_image"),
    ("bomb header", _bomb_png(), 413, "payload_too_large"),
    ("body over limit", b"\0" * (3 * 1024 * 1024), 413, "payload_too_large"),
]


@pytest.mark.parametrize(("name", "data", "status", "code"), BAD_IMAGES, ids=[b[0] for b in BAD_IMAGES])
def test_bad_image_then_good(client, image_png, name, data, status, code):
    response = client.post("/v1/images", data=data, content_type="application/octet-stream")
    assert response.status_code == status, response.json
    assert response.json["error"] == code
    assert client.post("/v1/images", data=image_png).status_code == 200


def test_image_over_pixel_limit(tiny_sam):
    app = create_app(make_config(tiny_sam, max_pixels=1000))
    try:
        client = app.test_client()
        response = client.post("/v1/images", data=png_bytes(picture()))
        assert response.status_code == 413 and response.json["error"] == "payload_too_large"
        assert client.post("/v1/images", data=png_bytes(picture(height=20, width=30))).status_code == 200
    finally:
        app.extensions["sam_service"].close()


def test_logits_of_another_image_rejected(client, image_id):
    other = client.post("/v1/images", data=png_bytes(picture(seed=5))).json["image_id"]
    logits_id = client.post("/v1/predict", json={"image_id": other, "box": [0, 0, 20, 20]}).json["objects"][
        0
    ]["logits_id"]
    response = client.post("/v1/predict", json={"image_id": image_id, "mask_input": logits_id})
    assert response.status_code == 400 and "another image" in response.json["detail"]


def test_unknown_route_and_method_are_json(client):
    assert client.get("/v1/nothing").json["error"] == "not_found"
    response = client.get("/v1/predict")
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"


def test_unexpected_error_is_generic_500_without_traceback(app, client, image_id, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("secret internal state")

    monkeypatch.setattr(app.extensions["sam_service"], "predict", broken)
    response = client.post("/v1/predict", json={"image_id": image_id, "box": [0, 0, 10, 10]})
    assert response.status_code == 500
    assert response.json["error"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    "message", ["CUDA out of memory. Tried to allocate 2.00 GiB", "MPS backend out of memory"]
)
def test_out_of_memory_is_503_then_next_request_works(app, client, image_id, monkeypatch, message):
    predictor = app.extensions["sam_service"].engine().predictor
    original = predictor.predict_torch
    calls = {"n": 0}

    def oom_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(message)
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_torch", oom_once)
    body = {"image_id": image_id, "points": [[10, 10]], "labels": [1]}
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 503 and response.json["error"] == "unavailable"
    assert client.post("/v1/predict", json=body).status_code == 200


# ------------------------------------------------------------ auth, metrics, docs
def test_token_required_everywhere_but_health(tiny_sam, image_png):
    app = create_app(make_config(tiny_sam, token="s3cret"))
    try:
        client = app.test_client()
        assert client.get("/health").status_code == 200
        for path in ("/ready", "/metrics", "/v1/models", "/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401 and response.json["error"] == "unauthorized", path
        assert client.post("/v1/images", data=image_png).status_code == 401
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong access token" in wrong.json["detail"]
        assert client.get("/v1/models", headers={"Authorization": "Token s3cret"}).status_code == 401
        assert (
            client.get("/v1/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
        )  # not base64
        basic = base64.b64encode(b"labelstudio:s3cret").decode()
        assert client.get("/v1/models", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        wrong_basic = base64.b64encode(b"labelstudio:nope").decode()
        assert client.get("/v1/models", headers={"Authorization": f"Basic {wrong_basic}"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=ok).status_code == 200
        assert client.post("/v1/images", data=image_png, headers=ok).status_code == 200
    finally:
        app.extensions["sam_service"].close()


def test_metrics_count_requests_cache_and_queue(client, image_png):
    client.post("/v1/images", data=image_png)
    client.post("/v1/images", data=image_png)
    client.post("/v1/predict", data="{bad", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sam_http_requests_total{method="POST",route="/v1/images",status="200"} 2.0' in text
    assert 'sam_http_requests_total{method="POST",route="/v1/predict",status="400"} 1.0' in text
    assert 'sam_http_request_seconds_bucket{le="0.002",method="POST",route="/v1/images"}' in text
    assert 'sam_cache_hits_total{cache="embeddings"} 1.0' in text
    assert 'sam_cache_misses_total{cache="embeddings"}' in text
    assert "sam_queue_depth 0.0" in text
    assert "sam_encoder_calls_total 1.0" in text


def test_a_prediction_counts_one_embedding_cache_use(client, image_png):
    """The answer budget looks up the image's size before predicting: a look, not a cache hit."""
    image_id = client.post("/v1/images", data=image_png).json["image_id"]  # a miss, then the encoding
    answer = client.post("/v1/predict", json={"image_id": image_id, "points": POINTS, "labels": LABELS})
    assert answer.status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sam_cache_hits_total{cache="embeddings"} 1.0' in text


def test_two_apps_keep_separate_metrics(tiny_sam, client):
    other = create_app(make_config(tiny_sam))
    try:
        client.get("/health")
        text = other.test_client().get("/metrics").get_data(as_text=True)
        assert 'route="/health"' not in text
    finally:
        other.extensions["sam_service"].close()


def test_served_openapi_equals_docs_copy(client):
    served = client.get("/openapi.json").json
    assert served == json.loads(DOCS_OPENAPI.read_text())
    assert served["openapi"].startswith("3.")
    for path in ("/v1/images", "/v1/predict", "/v1/automask", "/health", "/ready", "/metrics", "/v1/models"):
        assert path in served["paths"]
    assert set(served["components"]["schemas"]["PredictRequest"]["properties"]) >= {
        "image_id",
        "points",
        "labels",
        "box",
        "boxes",
        "mask_input",
        "multimask",
        "format",
    }
