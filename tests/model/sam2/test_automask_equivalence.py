"""Segment-everything on SAM 2.1: the same records as Meta's SAM2AutomaticMaskGenerator on the same weights.

Both generators run hiera_t with the same random weights at a 256-pixel model
input (Meta's feature sizes set to match) on a picture of flat shapes.
Thresholds are lowered (random weights predict low IoU) and NMS is turned off
where every candidate passing the filters should be compared, not only the
survivors.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.inference.automask import AutomaskGenerator
from backend.inference.sam2_predictor import Sam2Predictor
from tests.model.sam2.reference import reference_predictor
from tests.support.sa1b_records import assert_same_records

pytestmark = pytest.mark.slow


def _scene() -> np.ndarray:
    """A 200x300 picture: a bright disc, a dark bar and a mid-grey square on noise-free ground."""
    image = np.full((200, 300, 3), 40, dtype=np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    image[(yy - 70) ** 2 + (xx - 80) ** 2 < 45**2] = (230, 60, 60)
    image[130:170, 20:280] = (10, 200, 90)
    image[20:90, 190:270] = (128, 128, 250)
    return image


def _reference_generator(reference, **kwargs):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(reference, output_mode="coco_rle", **kwargs)
    generator.predictor._bb_feat_sizes = reference_predictor(reference)._bb_feat_sizes
    return generator


def _both(tiny_pair, **kwargs) -> tuple[list[dict], list[dict]]:
    ours, reference = tiny_pair
    image = _scene()
    expected = _reference_generator(reference, **kwargs).generate(image)
    got = AutomaskGenerator(ours, predictor_factory=Sam2Predictor, **kwargs).generate(image)
    return got, expected


LOW_THRESHOLDS = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def test_every_candidate_equals_the_references_without_nms(tiny_pair):
    got, expected = _both(tiny_pair, **LOW_THRESHOLDS, box_nms_thresh=1.0)
    assert len(expected) >= 20, "the set-up should give many candidates to compare"
    assert_same_records(got, expected)


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_the_same_records_as_the_reference_with_nms_and_crops(tiny_pair, crop_n_layers):
    got, expected = _both(tiny_pair, **LOW_THRESHOLDS, crop_n_layers=crop_n_layers)
    assert expected, "the set-up should keep some masks"
    assert_same_records(got, expected)


def test_the_iou_filter_keeps_what_the_references_keeps(tiny_pair):
    _, everything = _both(tiny_pair, **LOW_THRESHOLDS, box_nms_thresh=1.0)
    median = float(np.median([r["predicted_iou"] for r in everything]))
    got, expected = _both(tiny_pair, **{**LOW_THRESHOLDS, "pred_iou_thresh": median}, box_nms_thresh=1.0)
    assert 0 < len(expected) < len(everything)
    assert_same_records(got, expected)
