"""Scheduling seen through the HTTP API: work cap (413), full queues (503 + Retry-After), deadlines (504), priority."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from backend.api.errors import PayloadTooLarge
from backend.api.priority import Priority
from backend.serving.app import create_app
from backend.serving.service import SamService
from backend.serving.special_prompts import automask_points, check_automask_params, check_automask_work
from tests.serving.fake_ranker import FakeRanker
from tests.serving.tiny_model import make_config, picture, png_bytes

CHEAP = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture
def make_app(tiny_sam) -> Iterator[Callable[..., Flask]]:
    """``make_app(**config)``: an app over the tiny model with those settings."""
    services: list[SamService] = []

    def factory(**overrides: Any) -> Flask:
        config = make_config(tiny_sam, max_body_mb=2, **overrides)
        # text prompts rank with a stand-in for CLIP, whose weights are not on this machine
        service = SamService(config, text_prompter_factory=FakeRanker).start()
        app = create_app(config, service=service)
        services.append(service)
        assert services[-1].wait_ready(30)
        return app

    yield factory
    for service in services:
        service.close()


def _hold_worker(service: SamService) -> threading.Event:
    release, started = threading.Event(), threading.Event()
    service.worker.submit(lambda: (started.set(), release.wait(30)))
    assert started.wait(10)
    return release


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_the_default_cap_allows_metas_defaults_with_one_crop_layer():
    for per_side, layers, expected in ((32, 0, 1024), (32, 1, 5120), (64, 0, 4096)):
        params = check_automask_params({"points_per_side": per_side, "crop_n_layers": layers}, {})
        assert automask_points(params) == expected
        check_automask_work(params, 8192)
    widest = check_automask_params({"points_per_side": 128, "crop_n_layers": 3}, {})
    assert automask_points(widest) == 16384 * 85
    halved = check_automask_params(
        {"points_per_side": 32, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, {}
    )
    assert automask_points(halved) == 1024 + 4 * 256 + 16 * 64
    with pytest.raises(PayloadTooLarge, match="1392640 point prompts.*at most 8192.*--max-automask-points"):
        check_automask_work(widest, 8192)


def test_segment_everything_over_the_cap_gets_413_that_states_the_limit_before_any_work(make_app):
    app = make_app(max_automask_points=16)
    client = app.test_client()
    service = app.extensions["sam_service"]
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    encodes = service.encoder_calls
    refused = client.post("/v1/automask", json={"image_id": image_id, **CHEAP, "points_per_side": 5})
    assert refused.status_code == 413 and refused.json["error"] == "payload_too_large"
    assert "25 point prompts" in refused.json["detail"] and "at most 16" in refused.json["detail"]
    assert "--max-automask-points" in refused.json["detail"]
    crops = client.post("/v1/automask", json={"image_id": image_id, **CHEAP, "crop_n_layers": 1})
    assert crops.status_code == 413 and "80 point prompts" in crops.json["detail"]
    assert service.encoder_calls == encodes and service.bulk_jobs() == 0
    allowed = client.post("/v1/automask", json={"image_id": image_id, **CHEAP})
    assert allowed.status_code == 200, allowed.json


def test_a_full_bulk_queue_answers_503_with_retry_after(make_app):
    app = make_app(max_bulk_jobs=1)
    client = app.test_client()
    service = app.extensions["sam_service"]
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    release = _hold_worker(service)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(app.test_client().post, "/v1/automask", json={"image_id": image_id, **CHEAP})
        _wait_until(lambda: service.bulk_jobs() == 1)
        refused = client.post("/v1/automask", json={"image_id": image_id, **CHEAP, "box_nms_thresh": 0.5})
        text = client.post("/v1/predict", json={"image_id": image_id, "text": "a square"})
        release.set()
        assert first.result(30).status_code == 200
    for answer in (refused, text):
        assert answer.status_code == 503 and answer.json["error"] == "queue_full"
        assert "--max-bulk-jobs" in answer.json["detail"]
        assert int(answer.headers["Retry-After"]) >= 1
    point = client.post("/v1/predict", json={"image_id": image_id, "points": [[20, 15]], "labels": [1]})
    assert point.status_code == 200


def test_a_full_interactive_queue_answers_503_with_retry_after_1(make_app):
    app = make_app(max_queue=1)
    client = app.test_client()
    service = app.extensions["sam_service"]
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    body = {"image_id": image_id, "points": [[20, 15]], "labels": [1]}
    release = _hold_worker(service)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(app.test_client().post, "/v1/predict", json=body)
        _wait_until(lambda: service.queue_depth() == 1)
        refused = client.post("/v1/predict", json=body)
        release.set()
        assert first.result(30).status_code == 200
    assert refused.status_code == 503 and refused.json["error"] == "queue_full"
    assert refused.headers["Retry-After"] == "1" and "--max-queue" in refused.json["detail"]
    assert client.post("/v1/predict", json=body).status_code == 200


def test_bulk_work_past_its_deadline_stops_at_the_next_slice_with_504(make_app, monkeypatch):
    app = make_app(bulk_timeout_s=0.4)
    client = app.test_client()
    service = app.extensions["sam_service"]
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    batches: list[float] = []
    original = service.engine().predictor.predict_candidates_above

    def slow_batch(*args: Any, **kwargs: Any) -> Any:
        batches.append(time.monotonic())
        time.sleep(0.05)
        return original(*args, **kwargs)

    monkeypatch.setattr(service.engine().predictor, "predict_candidates_above", slow_batch)
    begin = time.monotonic()
    answer = client.post("/v1/automask", json={"image_id": image_id, **CHEAP, "points_per_side": 32})
    assert answer.status_code == 504 and answer.json["error"] == "deadline_exceeded"
    assert "0.4 s" in answer.json["detail"]
    assert time.monotonic() - begin < 3.0
    _wait_until(lambda: service.bulk_jobs() == 0, timeout=3.0)
    assert len(batches) < 16  # 1024 points in 64-point slices: stopped early
    settled = len(batches)
    time.sleep(0.3)
    assert len(batches) == settled  # and nothing keeps running after the answer


def test_interactive_work_past_its_deadline_gets_504(make_app):
    app = make_app(timeout_s=1.0)
    client = app.test_client()
    service = app.extensions["sam_service"]
    image_id = client.post("/v1/images", data=png_bytes(picture())).json["image_id"]
    release = _hold_worker(service)
    try:
        late = client.post("/v1/predict", json={"image_id": image_id, "points": [[20, 15]], "labels": [1]})
    finally:
        release.set()
    assert late.status_code == 504 and "1 s for an interactive request" in late.json["detail"]


def test_bulk_uploads_wait_for_interactive_work_and_bad_priorities_are_refused(client):
    bulk = client.post("/v1/images?priority=bulk", data=png_bytes(picture(seed=1)))
    assert bulk.status_code == 200 and len(bulk.json["image_id"]) == 64
    assert client.post("/v1/images?priority=interactive", data=png_bytes(picture(seed=2))).status_code == 200
    bad = client.post("/v1/images?priority=urgent", data=png_bytes(picture(seed=3)))
    assert bad.status_code == 400 and "'bulk'" in bad.json["detail"]


def test_an_interactive_upload_overtakes_a_queued_bulk_encoding_of_the_same_picture(app, monkeypatch):
    service = app.extensions["sam_service"]
    data = png_bytes(picture(seed=4))
    order: list[str] = []
    engine = service.engine()
    original = engine.encode
    monkeypatch.setattr(engine, "encode", lambda pixels: (order.append("encode"), original(pixels))[1])
    release = _hold_worker(service)
    service.worker.submit(lambda: order.append("other bulk"), priority=Priority.BULK)
    with ThreadPoolExecutor(2) as pool:
        bulk = pool.submit(app.test_client().post, "/v1/images?priority=bulk", data=data)
        _wait_until(lambda: service.bulk_jobs() == 2)
        person = pool.submit(app.test_client().post, "/v1/images", data=data)
        time.sleep(0.2)  # the person's request has joined the queued encoding
        release.set()
        assert bulk.result(30).json == person.result(30).json
    assert order == ["encode", "other bulk"] and service.encoder_calls == 1


def test_an_upload_past_its_deadline_leaves_the_shared_encoding_running_and_cached(make_app, monkeypatch):
    app = make_app(timeout_s=0.3)
    client = app.test_client()
    service = app.extensions["sam_service"]
    original = service.engine().predictor.compute_embedding
    monkeypatch.setattr(
        service.engine().predictor, "compute_embedding", lambda p: (time.sleep(0.6), original(p))[1]
    )
    data = png_bytes(picture(seed=5))
    late = client.post("/v1/images", data=data)
    assert late.status_code == 504 and late.json["error"] == "deadline_exceeded"
    _wait_until(lambda: service.cache_stats()["embeddings"].entries == 1, timeout=5)
    again = client.post("/v1/images", data=data)
    assert again.status_code == 200 and service.encoder_calls == 1
