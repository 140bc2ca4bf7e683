"""SAM 3 in the server: a word or exemplar boxes return every instance, one object each, as transformers finds them.

The server holds the tiny SAM (default, ``custom``) and a tiny random SAM 3
(``sam3-tiny``) saved in the Hub's layout and loaded by its folder.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from flask import Flask

pytest.importorskip("transformers", minversion="5")

from backend.formats.mask_codecs import from_coco_rle  # noqa: E402
from backend.serving.app import create_app  # noqa: E402
from tests.inference.sam3.tiny_sam3 import NUM_QUERIES, save_tiny_sam3  # noqa: E402
from tests.serving.tiny_model import make_config, png_bytes  # noqa: E402

SAM3 = "sam3-tiny"
POSITIVE = {"box": [10.0, 20.0, 60.0, 70.0], "positive": True}
NEGATIVE = {"box": [80.0, 5.0, 125.0, 40.0], "positive": False}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """90x130 (height x width) RGB."""
    return np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam3_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam3") / "tiny-sam3"
    save_tiny_sam3(folder)
    return folder


@pytest.fixture(scope="module")
def server(tiny_sam, sam3_folder) -> Iterator[Flask]:
    from backend.inference.sam3 import load_sam3

    app = create_app(make_config(tiny_sam, extra_models=((SAM3, load_sam3(sam3_folder)),)))
    assert app.extensions["sam_service"].wait_ready(60)
    yield app
    app.extensions["sam_service"].close()


@pytest.fixture(scope="module")
def image_id(server, image) -> str:
    answer = server.test_client().post("/v1/images", data=png_bytes(image), query_string={"model": SAM3})
    assert answer.status_code == 200, answer.json
    return answer.json["image_id"]


def _ask(server: Flask, **body) -> dict:
    answer = server.test_client().post("/v1/predict", json={"model": SAM3, **body})
    assert answer.status_code == 200, answer.json
    return answer.json


def test_models_say_sam3_finds_instances_of_text_and_exemplars(server):
    models = {m["name"]: m for m in server.test_client().get("/v1/models").json["models"]}
    assert models[SAM3]["family"] == "sam3" and "exemplars" in models[SAM3]["prompts"]
    assert "exemplars" not in models["custom"]["prompts"]


def test_a_word_returns_every_instance_as_its_own_object_best_first(server, image_id):
    answer = _ask(server, image_id=image_id, text="cat", threshold=0.0)
    objects = answer["objects"]
    assert len(objects) == NUM_QUERIES and answer["model"] == SAM3
    scores = [o["masks"][0]["score"] for o in objects]
    assert scores == sorted(scores, reverse=True)
    for obj in objects:
        assert len(obj["masks"]) == 1 and obj["labels"] == ["cat"] and obj["logits_id"] is None
        x1, y1, x2, y2 = obj["box"]
        assert 0 <= x1 <= x2 <= 130 and 0 <= y1 <= y2 <= 90
        assert from_coco_rle(obj["masks"][0]["segmentation"]).shape == (90, 130)


def test_the_answer_is_exactly_transformers_post_processing(server, image_id, image, sam3_folder):
    from backend.inference.sam3 import load_sam3

    models = load_sam3(sam3_folder)
    processor, detector = models.processor, models.detector
    inputs = processor(
        images=image,
        text="red car",
        input_boxes=[[POSITIVE["box"], NEGATIVE["box"]]],
        input_boxes_labels=[[1, 0]],
        return_tensors="pt",
    )
    with torch.inference_mode():
        outputs = detector(**{k: v for k, v in inputs.items() if k != "original_sizes"})
    expected = processor.post_process_instance_segmentation(
        outputs, threshold=0.2, mask_threshold=0.5, target_sizes=inputs["original_sizes"].tolist()
    )[0]
    order = expected["scores"].argsort(descending=True, stable=True)
    objects = _ask(server, image_id=image_id, text="red car", exemplars=[POSITIVE, NEGATIVE], threshold=0.2)[
        "objects"
    ]
    assert len(objects) == len(order) > 0
    np.testing.assert_allclose(
        [o["masks"][0]["score"] for o in objects], expected["scores"][order].numpy(), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        [o["box"] for o in objects], expected["boxes"][order].numpy(), rtol=0, atol=1e-4
    )
    masks = np.stack([from_coco_rle(o["masks"][0]["segmentation"]) for o in objects])
    np.testing.assert_array_equal(masks, expected["masks"][order].numpy().astype(bool))


def test_the_threshold_keeps_what_scores_above_it(server, image_id):
    everything = [
        o["masks"][0]["score"] for o in _ask(server, image_id=image_id, text="cat", threshold=0.0)["objects"]
    ]
    cut = float(np.median(everything))
    kept = [
        o["masks"][0]["score"] for o in _ask(server, image_id=image_id, text="cat", threshold=cut)["objects"]
    ]
    assert kept == [s for s in everything if s > cut] and 0 < len(kept) < len(everything)


def test_exemplars_alone_are_a_concept_and_change_the_answer(server, image_id):
    alone = _ask(server, image_id=image_id, exemplars=[POSITIVE], threshold=0.0)["objects"]
    with_text = _ask(server, image_id=image_id, text="cat", exemplars=[POSITIVE, NEGATIVE], threshold=0.0)[
        "objects"
    ]
    assert alone and alone[0]["labels"] == ["exemplar"]
    assert [o["masks"][0]["score"] for o in alone] != [o["masks"][0]["score"] for o in with_text]


def test_a_second_concept_on_the_image_reuses_its_cached_features(server, image_id):
    service = server.extensions["sam_service"]
    _ask(server, image_id=image_id, text="dog")
    before = service.encoder_calls
    _ask(server, image_id=image_id, text="tree")
    _ask(server, image_id=image_id, text="dog", exemplars=[POSITIVE])
    assert service.encoder_calls == before


def test_clicks_on_sam3_keep_three_ranked_masks_for_one_object(server, image_id):
    [obj] = _ask(server, image_id=image_id, points=[[40, 30]], labels=[1])["objects"]
    scores = [m["score"] for m in obj["masks"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and obj["logits_id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": "cat", "points": [[40, 30]], "labels": [1]}, 400, "another request"),
        ({"text": "cat", "threshold": 1.5}, 400, "threshold"),
        ({"exemplars": [{"box": [0, 0, 500, 10]}]}, 400, "outside"),
    ],
)
def test_bad_concept_prompts_get_a_400_that_says_why(server, image_id, body, status, words):
    answer = server.test_client().post("/v1/predict", json={"model": SAM3, "image_id": image_id, **body})
    assert answer.status_code == status and words in answer.json["detail"], answer.json


def test_other_families_refuse_exemplars_and_threshold_naming_what_they_answer(server, image):
    client = server.test_client()
    image_id = client.post("/v1/images", data=png_bytes(image)).json["image_id"]
    exemplars = client.post("/v1/predict", json={"image_id": image_id, "exemplars": [POSITIVE]})
    assert exemplars.status_code == 400 and "does not answer exemplars" in exemplars.json["detail"]
    threshold = client.post(
        "/v1/predict", json={"image_id": image_id, "points": [[3, 3]], "labels": [1], "threshold": 0.3}
    )
    assert threshold.status_code == 400 and "SAM 3" in threshold.json["detail"]


def test_sam3_by_name_offline_says_how_to_get_the_gated_weights_while_the_other_model_serves(
    tiny_sam, image, monkeypatch, tmp_path
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    app = create_app(make_config(tiny_sam, extra_models=("sam3",)))
    service = app.extensions["sam_service"]
    try:
        service.wait_ready(60)
        models = {m["name"]: m for m in app.test_client().get("/v1/models").json["models"]}
        assert models["custom"]["ready"] and not models["sam3"]["ready"]
        client = app.test_client()
        image_id = client.post("/v1/images", data=png_bytes(image)).json["image_id"]
        answer = client.post("/v1/predict", json={"image_id": image_id, "text": "cat", "model": "sam3"})
        assert answer.status_code == 503 and answer.json["error"] == "weights_unavailable"
        assert "HF_TOKEN" in answer.json["detail"] and "SAM License" in answer.json["detail"]
        assert (
            client.post(
                "/v1/predict", json={"image_id": image_id, "points": [[3, 3]], "labels": [1]}
            ).status_code
            == 200
        )
    finally:
        service.close()
