"""Sam3Predictor.predict: clicks and boxes -> ranked masks through SAM 3's tracker head (same checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.sam3 import Sam3Predictor, load_sam3, tracker_image_embeddings
from tests.inference.sam3.tiny_sam3 import MASK_SIDE

POINTS = [[40.0, 30.0], [100.0, 70.0]]
LABELS = [1, 0]


@pytest.fixture()
def predictor(sam3_models, image) -> Sam3Predictor:
    p = Sam3Predictor(sam3_models)
    p.set_image(image)
    return p


def test_tracker_features_come_from_the_cached_backbone_as_transformers_computes_them(sam3_models, image):
    predictor = Sam3Predictor(sam3_models)
    features = predictor.compute_embedding(image)
    with torch.inference_mode():
        ours = tracker_image_embeddings(sam3_models.tracker, features.backbone)
        theirs = sam3_models.tracker.get_image_embeddings(predictor.preprocess(image))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_points_give_three_ranked_masks(predictor, image):
    out = predictor.predict(point_coords=POINTS, point_labels=LABELS)
    assert out.masks.shape == (1, 3, *image.shape[:2]) and out.masks.dtype == bool
    assert out.scores.shape == (1, 3) and np.all(np.diff(out.scores, axis=1) <= 0)
    assert out.low_res_logits.shape == (1, 3, MASK_SIDE, MASK_SIDE)
    assert out.stability_scores is not None and out.stability_scores.shape == (1, 3)


def test_same_answer_as_transformers_tracker_end_to_end(sam3_models, predictor, image):
    """Our path (cached ViT tokens, tracker neck) equals ``Sam3TrackerModel(pixel_values, ...)``."""
    processor = sam3_models.tracker_processor
    box = [20.0, 10.0, 110.0, 80.0]
    inputs = processor(
        images=image,
        input_points=[[POINTS]],
        input_labels=[[LABELS]],
        input_boxes=[[box]],
        return_tensors="pt",
    )
    with torch.inference_mode():
        outputs = sam3_models.tracker(
            pixel_values=inputs["pixel_values"],
            input_points=inputs["input_points"],
            input_labels=inputs["input_labels"],
            input_boxes=inputs["input_boxes"],
        )
    scores, order = outputs.iou_scores[0].sort(dim=1, descending=True)
    low_res = torch.gather(outputs.pred_masks[0], 1, order[:, :, None, None].expand_as(outputs.pred_masks[0]))
    masks = processor.post_process_masks([low_res], inputs["original_sizes"])[0]

    ours = predictor.predict(point_coords=POINTS, point_labels=LABELS, box=box)
    np.testing.assert_array_equal(ours.scores, scores.numpy())
    np.testing.assert_array_equal(ours.low_res_logits, low_res.numpy())
    np.testing.assert_array_equal(ours.masks, masks.numpy())


def test_boxes_give_one_object_each(predictor, image):
    out = predictor.predict(box=[[0, 0, 60, 50], [50, 30, 130, 90]])
    assert out.masks.shape == (2, 3, *image.shape[:2])
    assert not np.array_equal(out.scores[0], out.scores[1])


def test_single_mask_output(predictor):
    out = predictor.predict(point_coords=POINTS[:1], point_labels=LABELS[:1], multimask_output=False)
    assert out.masks.shape[:2] == (1, 1) and out.scores.shape == (1, 1)


def test_refinement_with_the_previous_logits(predictor):
    first = predictor.predict(point_coords=POINTS[:1], point_labels=LABELS[:1])
    again = predictor.predict(
        point_coords=POINTS, point_labels=LABELS, mask_input=first.low_res_logits[:, :1], stability=False
    )
    assert again.masks.shape == first.masks.shape and again.stability_scores is None
    plain = predictor.predict(point_coords=POINTS, point_labels=LABELS)
    assert not np.array_equal(again.scores, plain.scores)  # the mask prompt is used


def test_one_mask_input_per_box(predictor):
    boxes = [[0, 0, 60, 50], [50, 30, 130, 90]]
    first = predictor.predict(box=boxes)
    together = predictor.predict(box=boxes, mask_input=first.low_res_logits[:, :1])
    alone = predictor.predict(box=boxes[1], mask_input=first.low_res_logits[1:2, :1])
    assert together.masks.shape[:2] == (2, 3)
    np.testing.assert_array_equal(together.scores[1], alone.scores[0])


def test_tracker_features_are_built_once_per_image(sam3_models, predictor, image):
    calls = []
    handle = sam3_models.tracker.vision_encoder.neck.register_forward_hook(lambda *_: calls.append(1))
    try:
        predictor.predict(point_coords=POINTS, point_labels=LABELS)
        predictor.predict(box=[0, 0, 60, 50])
        assert len(calls) == 1
        predictor.set_image(image[:, ::-1].copy())
        predictor.predict(box=[0, 0, 60, 50])
        assert len(calls) == 2
    finally:
        handle.remove()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give a prompt"),
        ({"point_coords": [[500, 10]], "point_labels": [1]}, "outside the 130x90 image"),
        ({"point_coords": POINTS, "point_labels": [1]}, "one label"),
        ({"box": [0, 0, 10, 10], "mask_input": np.zeros((1, 8, 8))}, "mask_input must be"),
    ],
)
def test_bad_prompts_say_how_to_fix_them(predictor, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        predictor.predict(**kwargs)


def test_weights_without_the_tracker_answer_concepts_only(sam3_folder, image):
    predictor = Sam3Predictor(load_sam3(sam3_folder, interactive=False))
    predictor.set_image(image)
    with pytest.raises(InvalidInput, match="text and exemplar_boxes only"):
        predictor.predict(point_coords=POINTS, point_labels=LABELS)
