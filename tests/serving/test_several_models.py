"""One server, two model families: requests choose with ``model``; caches and the model thread are shared.

The server holds the tiny SAM (the default, named ``custom``) and a SAM 2.1
hiera_t at a 256-pixel input with random weights (named ``sam2-t``). Answers
from the server must equal the family's own predictor on the same image.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from flask import Flask

from backend.api.segment_everything import generator_defaults
from backend.inference.automask import AutomaskGenerator
from backend.inference.predictor import SamPredictor
from backend.inference.sam2_predictor import Sam2Predictor
from backend.model.sam2 import build_sam2, sam2_config
from backend.serving.app import create_app
from tests.serving.tiny_model import make_config, picture, png_bytes

SAM2 = "sam2-t"


@pytest.fixture(scope="module")
def tiny_sam2():
    import torch

    torch.manual_seed(0)
    return build_sam2(sam2_config("sam2.1_hiera_t", image_size=256)).eval()


@pytest.fixture(scope="module")
def two_models(tiny_sam, tiny_sam2) -> Iterator[Flask]:
    app = create_app(make_config(tiny_sam, extra_models=((SAM2, tiny_sam2),), cache_mb=64))
    assert app.extensions["sam_service"].wait_ready(60)
    yield app
    app.extensions["sam_service"].close()


def _upload(app: Flask, **query: str) -> str:
    response = app.test_client().post("/v1/images", data=png_bytes(picture()), query_string=query)
    assert response.status_code == 200, response.json
    return response.json["image_id"]


def _masks(answer: dict) -> np.ndarray:
    from backend.formats.mask_codecs import from_coco_rle

    return np.stack([from_coco_rle(m["segmentation"]) for m in answer["objects"][0]["masks"]])


def test_models_lists_both_families_with_their_prompts_and_defaults(two_models):
    models = {m["name"]: m for m in two_models.test_client().get("/v1/models").json["models"]}
    assert set(models) == {"custom", SAM2}
    assert models["custom"]["family"] == "sam" and models[SAM2]["family"] == "sam2.1"
    assert all(m["ready"] and "points" in m["prompts"] for m in models.values())
    assert models[SAM2]["automask_defaults"] == {"pred_iou_thresh": 0.8, "stability_score_thresh": 0.95}


def test_each_model_answers_as_its_own_predictor_on_one_uploaded_image(two_models, tiny_sam, tiny_sam2):
    client = two_models.test_client()
    image_id = _upload(two_models)  # encoded by the default model only
    prompt = {"image_id": image_id, "points": [[30, 22]], "labels": [1]}
    by_sam = client.post("/v1/predict", json=prompt)
    by_sam2 = client.post("/v1/predict", json={**prompt, "model": SAM2})  # encoded now from the held pixels
    assert by_sam.status_code == by_sam2.status_code == 200, by_sam2.json
    assert (by_sam.json["model"], by_sam2.json["model"]) == ("custom", SAM2)
    for network, factory, answer in ((tiny_sam, SamPredictor, by_sam), (tiny_sam2, Sam2Predictor, by_sam2)):
        predictor = factory(network)
        predictor.set_image(picture())
        expected = predictor.predict(point_coords=[[30, 22]], point_labels=[1])
        np.testing.assert_array_equal(_masks(answer.json), expected.masks[0])
    assert not np.array_equal(_masks(by_sam.json), _masks(by_sam2.json)), "two networks, two answers"


def test_one_cache_budget_holds_an_entry_per_model_and_image(two_models):
    service = two_models.extensions["sam_service"]
    image_id = _upload(two_models, model=SAM2)
    before = service.encoder_calls
    for model in ("custom", SAM2, SAM2):
        info = service.image_info(image_id, model=model)
        assert (info.width, info.height) == (80, 60)
    assert service.encoder_calls - before <= 1, "each model encodes a picture once"
    assert service.cache_stats()["embeddings"].capacity_bytes == 64 * 2**20


def test_an_unknown_model_is_404_naming_the_served_ones(two_models):
    client = two_models.test_client()
    image_id = _upload(two_models)
    answer = client.post(
        "/v1/predict", json={"image_id": image_id, "points": [[3, 3]], "labels": [1], "model": "vit_h"}
    )
    assert answer.status_code == 404
    assert (
        "'vit_h'" in answer.json["detail"]
        and SAM2 in answer.json["detail"]
        and "custom" in answer.json["detail"]
    )
    upload = client.post("/v1/images", data=png_bytes(picture()), query_string={"model": "nope"})
    assert upload.status_code == 404 and "GET /v1/models" in upload.json["detail"]


def test_a_mask_from_one_model_cannot_refine_with_the_other(two_models):
    client = two_models.test_client()
    image_id = _upload(two_models)
    first = client.post("/v1/predict", json={"image_id": image_id, "points": [[30, 22]], "labels": [1]})
    logits_id = first.json["objects"][0]["logits_id"]
    refine = {
        "image_id": image_id,
        "points": [[30, 22]],
        "labels": [1],
        "mask_input": logits_id,
        "model": SAM2,
    }
    answer = client.post("/v1/predict", json=refine)
    assert answer.status_code == 400 and "'custom'" in answer.json["detail"]


def test_segment_everything_uses_the_chosen_models_generator_and_defaults(two_models, tiny_sam2):
    client = two_models.test_client()
    image_id = _upload(two_models)
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    answer = client.post("/v1/automask", json={"image_id": image_id, "model": SAM2, **params})
    assert answer.status_code == 200 and answer.json["model"] == SAM2
    expected = AutomaskGenerator(tiny_sam2, **params).generate(picture())
    assert len(answer.json["records"]) == len(expected) > 0
    got = sorted(round(r["predicted_iou"], 4) for r in answer.json["records"])
    assert got == sorted(round(r["predicted_iou"], 4) for r in expected)


def test_the_in_process_client_chooses_the_model_for_uploads_and_predictions(two_models, tiny_sam2):
    from backend.serving.local_client import LocalSamClient

    client = LocalSamClient.from_service(two_models.extensions["sam_service"])
    info = client.add_image(picture(), model=SAM2)
    [obj] = client.predict(info.image_id, points=[[30, 22]], labels=[1], model=SAM2)
    predictor = Sam2Predictor(tiny_sam2)
    predictor.set_image(picture())
    np.testing.assert_array_equal(
        obj.masks, predictor.predict(point_coords=[[30, 22]], point_labels=[1]).masks[0]
    )


def test_a_mixed_concurrent_load_gets_each_models_own_answers(two_models, tiny_sam, tiny_sam2):
    """Requests for both models at once, on two pictures: micro-batching and decoder caches never mix them."""
    from concurrent.futures import ThreadPoolExecutor

    service = two_models.extensions["sam_service"]
    pictures = [picture(seed=s) for s in (7, 8)]
    ids = [service.add_image(p).image_id for p in pictures]
    expected = {}
    for name, network, factory in (("custom", tiny_sam, SamPredictor), (SAM2, tiny_sam2, Sam2Predictor)):
        predictor = factory(network)
        for i, pixels in enumerate(pictures):
            predictor.set_image(pixels)
            expected[name, i] = predictor.predict(point_coords=[[20 + 5 * i, 15]], point_labels=[1]).masks[0]
    jobs = [(name, i) for _ in range(6) for name in ("custom", SAM2) for i in range(2)]

    def ask(job: tuple[str, int]) -> np.ndarray:
        name, i = job
        [obj] = service.predict(ids[i], points=[[20 + 5 * i, 15]], labels=[1], model=name)
        return obj.masks

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    for job, masks in zip(jobs, answers, strict=True):
        np.testing.assert_array_equal(masks, expected[job], err_msg=str(job))


def test_auto_batch_size_is_the_largest_any_model_takes(tiny_sam, tiny_sam2):
    from backend.serving.service import AUTO_MAX_BATCH, SamService

    service = SamService(make_config(tiny_sam, extra_models=((SAM2, tiny_sam2),), max_batch=0)).start()
    try:
        assert service.wait_ready(60)
        sam, sam2 = service.engine(), service.engine(SAM2)
        assert sam2.max_requests_per_call() == 1 < sam.max_requests_per_call()
        assert service.worker.max_batch == min(AUTO_MAX_BATCH, sam.max_requests_per_call())
        listed = {m["name"]: m["max_batch"] for m in service.models()}
        assert listed == {"custom": service.worker.max_batch, SAM2: 1}, "each model's own batch"
    finally:
        service.close()


def test_segment_everything_lets_other_work_in_after_each_decoder_call_with_the_same_records(
    two_models, tiny_sam2, monkeypatch
):
    """The server's slices of segment-everything are one decoder call each (a SAM 2.1 slice of
    64 points on a CPU is 64 calls, about 2 s of waiting for a click on another model)."""
    engine = two_models.extensions["sam_service"].engine(SAM2)
    monkeypatch.setattr(engine.predictor, "prompts_per_decoder_call", lambda: 2)
    events: list[str] = []
    decode = engine.predictor.predict_candidates_above

    def logged_decode(coords, labels, min_iou):
        events.append(f"decode {len(coords)}")
        return decode(coords, labels, min_iou)

    monkeypatch.setattr(engine.predictor, "predict_candidates_above", logged_decode)
    params = {**generator_defaults(), "points_per_side": 4, "points_per_batch": 64}
    params.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    records = engine.segment_everything(
        engine.encode(picture()), picture(), params, lambda: events.append("yield")
    )
    decodes = [i for i, event in enumerate(events) if event.startswith("decode")]
    assert [events[i] for i in decodes] == ["decode 2"] * 8
    assert all("yield" in events[a:b] for a, b in itertools.pairwise(decodes)), events
    expected = AutomaskGenerator(tiny_sam2, **params).generate(picture())
    assert [r["predicted_iou"] for r in records] == [r["predicted_iou"] for r in expected]


def test_a_sam_group_above_its_own_limit_is_decoded_in_parts_with_the_same_answers(two_models, monkeypatch):
    from backend.inference.engine import DecodeRequest
    from backend.inference.prompts import check_prompt

    service = two_models.extensions["sam_service"]
    engine = service.engine()
    image = engine.encode(picture(seed=9))
    requests = [
        DecodeRequest(
            engine,
            image,
            check_prompt(
                width=80,
                height=60,
                points=[[10 + 5 * i, 20]],
                labels=[1],
                box=None,
                boxes=None,
                has_mask_input=False,
            ),
            None,
            True,
        )
        for i in range(5)
    ]
    together = engine.decode(requests)
    calls = []
    original = engine.predictor.predict_torch
    monkeypatch.setattr(
        engine.predictor, "predict_torch", lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    )
    monkeypatch.setattr(engine, "max_requests_per_call", lambda: 2)
    apart = engine.decode(requests)
    assert len(calls) == 3, "5 one-prompt requests at most 2 per call"
    for a, b in zip(together, apart, strict=True):
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_model_in_the_query_string_of_a_json_route_is_refused_not_ignored(two_models):
    client = two_models.test_client()
    image_id = _upload(two_models)
    body = {"image_id": image_id, "points": [[3, 3]], "labels": [1]}
    for route in ("/v1/predict", "/v1/automask"):
        json_body = body if route == "/v1/predict" else {"image_id": image_id}
        answer = client.post(route, json=json_body, query_string={"model": SAM2})
        assert answer.status_code == 400, route
        assert "JSON body, not in the query string (got model)" in answer.json["detail"]


@pytest.mark.parametrize("name", ["sam2-t+", "tiny v2+b"], ids=["plus", "plus and a space"])
def test_a_plus_sent_raw_in_a_query_string_gets_a_hint(tiny_sam, tiny_sam2, name):
    app = create_app(make_config(tiny_sam, extra_models=((name, tiny_sam2),), cache_mb=16))
    try:
        assert app.extensions["sam_service"].wait_ready(60)
        raw = name.replace(" ", "%20")
        answer = app.test_client().post(f"/v1/images?model={raw}", data=png_bytes(picture()))
        assert answer.status_code == 404 and "send it as %2B" in answer.json["detail"]
        encoded = app.test_client().post(
            f"/v1/images?model={raw.replace('+', '%2B')}", data=png_bytes(picture())
        )
        assert encoded.status_code == 200
    finally:
        app.extensions["sam_service"].close()


def test_an_unknown_model_path_is_quoted_as_the_client_sent_it(two_models, tmp_path):
    """The client's own string comes back whole; the server's paths would be cut to file names."""
    typo = str(tmp_path / "models" / "sam2.1_hiera_tiny.pt").replace("/models/", "//models/")
    body = {"image_id": "0" * 64, "points": [[1, 1]], "labels": [1], "model": typo}
    answer = two_models.test_client().post("/v1/predict", json=body)
    assert answer.status_code == 404 and f"unknown model {typo!r}" in answer.json["detail"]


def test_an_image_id_that_spells_another_models_key_finds_nothing(tiny_sam, tiny_sam2):
    """Model names are paths and image ids client strings: ``custom`` + ``z:ID`` must not
    reach what ``custom:z`` holds for ``ID`` (the stores key by the pair)."""
    app = create_app(make_config(tiny_sam, extra_models=(("custom:z", tiny_sam2),), cache_mb=64))
    try:
        assert app.extensions["sam_service"].wait_ready(60)
        client = app.test_client()
        image_id = client.post("/v1/images?model=custom:z", data=png_bytes(picture())).json["image_id"]
        posing = client.get(f"/v1/images/z:{image_id}", query_string={"model": "custom"})
        assert posing.status_code == 404, posing.json
        prompt = {"image_id": f"z:{image_id}", "points": [[30, 22]], "labels": [1], "model": "custom"}
        assert client.post("/v1/predict", json=prompt).status_code == 404
    finally:
        app.extensions["sam_service"].close()


@pytest.mark.parametrize(
    "query, form, named",
    [
        ({"modle": SAM2}, {}, "modle"),
        ({"model": SAM2, "prioritee": "bulk"}, {}, "prioritee"),
        ({}, {"model": SAM2}, "model"),
        ({}, {"priority": "bulk"}, "priority"),
    ],
    ids=["misspelt model", "misspelt priority", "model as a form field", "priority as a form field"],
)
def test_an_upload_whose_model_or_priority_would_be_ignored_is_refused(two_models, query, form, named):
    client = two_models.test_client()
    data = {"file": (io.BytesIO(png_bytes(picture(seed=5))), "p.png"), **form}
    response = client.post("/v1/images", query_string=query, data=data, content_type="multipart/form-data")
    assert response.status_code == 400 and response.json["error"] == "invalid_input", response.json
    assert named in response.json["detail"]
    two = {"file": [(io.BytesIO(png_bytes(picture(seed=s))), f"{s}.png") for s in (5, 6)]}
    doubled = client.post("/v1/images", data=two, content_type="multipart/form-data")
    assert doubled.status_code == 400 and "several 'file' fields" in doubled.json["detail"]
    got = client.get(f"/v1/images/{'0' * 64}", query_string={"modle": SAM2})
    assert got.status_code == 400 and "modle" in got.json["detail"]
