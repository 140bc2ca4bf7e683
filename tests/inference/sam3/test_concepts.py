"""Sam3Predictor.predict_concept: every instance of a phrase or of example boxes, best score first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.sam3 import ConceptInstance, Sam3Predictor
from tests.inference.sam3.tiny_sam3 import NUM_QUERIES

POSITIVE = ([10.0, 20.0, 60.0, 70.0], True)
NEGATIVE = ([80.0, 5.0, 125.0, 40.0], False)


@pytest.fixture()
def predictor(sam3_models, image) -> Sam3Predictor:
    p = Sam3Predictor(sam3_models)
    p.set_image(image)
    return p


def _scores(instances: list[ConceptInstance]) -> np.ndarray:
    return np.array([i.score for i in instances], dtype=np.float32)


def test_one_instance_per_query_above_zero_with_mask_box_and_score(predictor, image):
    instances = predictor.predict_concept("cat", threshold=0.0)
    assert len(instances) == NUM_QUERIES
    for instance in instances:
        assert instance.mask.shape == image.shape[:2] and instance.mask.dtype == bool
        assert instance.box.shape == (4,) and instance.box.dtype == np.float32
        x1, y1, x2, y2 = instance.box
        assert 0 <= x1 <= x2 <= image.shape[1] and 0 <= y1 <= y2 <= image.shape[0]
        assert 0.0 <= instance.score <= 1.0


def test_instances_are_sorted_by_score(predictor):
    scores = _scores(predictor.predict_concept("red car", threshold=0.0))
    assert np.all(np.diff(scores) <= 0)
    assert len(set(scores.tolist())) > 1  # the order is not trivially flat


def test_threshold_keeps_the_instances_scoring_above_it(predictor):
    everything = _scores(predictor.predict_concept("cat", threshold=0.0))
    cut = float(np.median(everything))
    kept = _scores(predictor.predict_concept("cat", threshold=cut))
    np.testing.assert_array_equal(kept, everything[everything > cut])
    assert 0 < len(kept) < len(everything)
    assert predictor.predict_concept("cat", threshold=1.0) == []


def test_mask_threshold_grows_or_shrinks_the_masks(predictor):
    loose = predictor.predict_concept("cat", threshold=0.0, mask_threshold=0.0)
    strict = predictor.predict_concept("cat", threshold=0.0, mask_threshold=1.0)
    assert all(i.mask.all() for i in loose)  # every probability is above 0
    assert not any(i.mask.any() for i in strict)  # none is above 1


def test_different_phrases_give_different_answers(predictor):
    assert not np.array_equal(
        _scores(predictor.predict_concept("cat", threshold=0.0)),
        _scores(predictor.predict_concept("dog", threshold=0.0)),
    )


def test_exemplar_boxes_change_the_answer(predictor):
    text_only = _scores(predictor.predict_concept("cat", threshold=0.0))
    with_positive = _scores(predictor.predict_concept("cat", [POSITIVE], threshold=0.0))
    with_both = _scores(predictor.predict_concept("cat", [POSITIVE, NEGATIVE], threshold=0.0))
    negative_as_positive = _scores(
        predictor.predict_concept("cat", [POSITIVE, (NEGATIVE[0], True)], threshold=0.0)
    )
    assert not np.allclose(text_only, with_positive)
    assert not np.allclose(with_positive, with_both)
    assert not np.allclose(with_both, negative_as_positive)  # the label matters, not only the box


def test_exemplar_boxes_alone_are_a_concept(predictor):
    instances = predictor.predict_concept(exemplar_boxes=[POSITIVE, NEGATIVE], threshold=0.0)
    assert len(instances) == NUM_QUERIES


def test_second_concept_on_the_same_image_skips_the_image_encoder(sam3_models, image):
    calls = {"vision": 0, "text": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1

        return hook

    handles = [
        sam3_models.detector.vision_encoder.register_forward_hook(count("vision")),
        sam3_models.detector.text_encoder.register_forward_hook(count("text")),
    ]
    try:
        predictor = Sam3Predictor(sam3_models)
        predictor.set_image(image)
        predictor.predict_concept("cat")
        predictor.predict_concept("dog", [POSITIVE])
        predictor.predict_concept("cat", [NEGATIVE])
        assert calls == {"vision": 1, "text": 2}  # one image pass; "cat" encoded once
        predictor.set_image(image[::-1].copy())
        predictor.predict_concept("cat")
        assert calls == {"vision": 2, "text": 2}  # the phrase cache outlives the image
    finally:
        for handle in handles:
            handle.remove()


def test_text_cache_is_bounded_in_bytes(sam3_models, image):
    probe = Sam3Predictor(sam3_models)
    probe.set_image(image)
    probe.predict_concept("a")
    one_phrase = probe.text_cache.stats().nbytes
    assert one_phrase > 0
    predictor = Sam3Predictor(sam3_models, text_cache_bytes=2 * one_phrase + one_phrase // 2)
    predictor.set_image(image)
    for phrase in ("a", "b", "c", "b"):
        predictor.predict_concept(phrase)
    stats = predictor.text_cache.stats()
    assert (stats.entries, stats.evictions, stats.hits) == (2, 1, 1)


def test_set_embedding_reuses_computed_features(sam3_models, image):
    first = Sam3Predictor(sam3_models)
    features = first.compute_embedding(image)
    assert features.nbytes == sum(t.numel() * 4 for t in features.tensors())
    second = Sam3Predictor(sam3_models)
    second.set_embedding(features, original_size=image.shape[:2])
    first.set_image(image)
    a = first.predict_concept("cat", threshold=0.0)
    b = second.predict_concept("cat", threshold=0.0)
    np.testing.assert_array_equal(_scores(a), _scores(b))


def test_same_answer_as_transformers_end_to_end(sam3_models, image):
    """Our cached-features path equals ``Sam3Model(**processor(...))`` + transformers' post-processing."""
    processor, model = sam3_models.processor, sam3_models.detector
    boxes, labels = [[POSITIVE[0], NEGATIVE[0]]], [[1, 0]]
    threshold, mask_threshold = 0.2, 0.4
    inputs = processor(
        images=image, text="red car", input_boxes=boxes, input_boxes_labels=labels, return_tensors="pt"
    )
    with torch.inference_mode():
        outputs = model(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            input_boxes=inputs["input_boxes"],
            input_boxes_labels=inputs["input_boxes_labels"],
        )
    expected = processor.post_process_instance_segmentation(
        outputs,
        threshold=threshold,
        mask_threshold=mask_threshold,
        target_sizes=inputs["original_sizes"].tolist(),
    )[0]
    order = expected["scores"].argsort(descending=True, stable=True)

    predictor = Sam3Predictor(sam3_models)
    predictor.set_image(image)
    ours = predictor.predict_concept(
        "red car", [POSITIVE, NEGATIVE], threshold=threshold, mask_threshold=mask_threshold
    )

    assert len(ours) == len(order) > 0
    np.testing.assert_array_equal(_scores(ours), expected["scores"][order].numpy())
    np.testing.assert_array_equal(np.stack([i.box for i in ours]), expected["boxes"][order].numpy())
    np.testing.assert_array_equal(
        np.stack([i.mask for i in ours]), expected["masks"][order].numpy().astype(bool)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "non-empty phrase"),
        ({"text": None}, "at least one positive exemplar"),
        ({"text": None, "exemplar_boxes": [NEGATIVE]}, "at least one positive exemplar"),
        ({"text": "cat", "threshold": 1.5}, "threshold must be in"),
        ({"text": "cat", "mask_threshold": float("nan")}, "mask_threshold must be in"),
        ({"text": "cat", "exemplar_boxes": [([0, 0, 500, 10], True)]}, "outside the 130x90 image"),
        ({"text": "cat", "exemplar_boxes": [([0, 0, 10, 10], "yes")]}, "positive = true"),
        ({"text": "cat", "exemplar_boxes": [[0, 0, 10, 10]]}, r"\(\[x1, y1, x2, y2\], positive\) pairs"),
        ({"text": " ".join(["cat"] * 40)}, "at most 32"),
    ],
)
def test_bad_prompts_say_how_to_fix_them(predictor, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        predictor.predict_concept(**kwargs)


def test_no_image_set(sam3_models):
    with pytest.raises(InvalidInput, match="no image is set"):
        Sam3Predictor(sam3_models).predict_concept("cat")
