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
from pycocotools import mask as coco_mask

from backend.inference.automask import AutomaskGenerator
from backend.inference.sam2_predictor import Sam2Predictor
from tests.model.sam2.reference import reference_predictor

pytestmark = pytest.mark.slow


def _scene() -> np.ndarray:
    """A 200x300 picture: a bright disc, a dark bar and a mid-grey square on noise-free ground."""
    image = np.full((200, 300, 3), 40, dtype=np.uint8)
    yy, xx = np.mgrid[0:200, 0:300]
    image[(yy - 70) ** 2 + (xx - 80) ** 2 < 45**2] = (230, 60, 60)
    image[130:170, 20:280] = (10, 200, 90)
    image[20:90, 190:270] = (128, 128, 250)
    return image


def _decode(record: dict) -> np.ndarray:
    segmentation = record["segmentation"]
    if isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        return coco_mask.decode(rle).astype(bool)
    return np.asarray(segmentation, dtype=bool)


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


def _assert_same_records(ours: list[dict], reference: list[dict]) -> None:
    """One-to-one match with mask IoU >= 0.99 and equal scores, points and crop boxes."""
    assert len(ours) == len(reference)
    ours_masks = [_decode(r) for r in ours]
    unmatched = set(range(len(ours)))
    for ref in reference:
        ref_mask = _decode(ref)
        match = next(
            (
                i
                for i in unmatched
                if (ours_masks[i] & ref_mask).sum() >= 0.99 * max((ours_masks[i] | ref_mask).sum(), 1)
            ),
            None,
        )
        assert match is not None, f"no mask of ours matches the reference mask at {ref['bbox']}"
        unmatched.discard(match)
        mine = ours[match]
        assert mine["predicted_iou"] == pytest.approx(ref["predicted_iou"], abs=1e-4)
        assert mine["stability_score"] == pytest.approx(ref["stability_score"], abs=1e-2)
        assert mine["point_coords"][0] == pytest.approx(ref["point_coords"][0])
        assert mine["crop_box"] == [int(v) for v in ref["crop_box"]]
        assert mine["area"] == pytest.approx(ref["area"], rel=0.01)
        assert np.abs(np.array(mine["bbox"]) - np.array(ref["bbox"])).max() <= 1


LOW_THRESHOLDS = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def test_every_candidate_equals_the_references_without_nms(tiny_pair):
    got, expected = _both(tiny_pair, **LOW_THRESHOLDS, box_nms_thresh=1.0)
    assert len(expected) >= 20, "the set-up should give many candidates to compare"
    _assert_same_records(got, expected)


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_the_same_records_as_the_reference_with_nms_and_crops(tiny_pair, crop_n_layers):
    got, expected = _both(tiny_pair, **LOW_THRESHOLDS, crop_n_layers=crop_n_layers)
    assert expected, "the set-up should keep some masks"
    _assert_same_records(got, expected)


def test_the_iou_filter_keeps_what_the_references_keeps(tiny_pair):
    _, everything = _both(tiny_pair, **LOW_THRESHOLDS, box_nms_thresh=1.0)
    median = float(np.median([r["predicted_iou"] for r in everything]))
    got, expected = _both(tiny_pair, **{**LOW_THRESHOLDS, "pred_iou_thresh": median}, box_nms_thresh=1.0)
    assert 0 < len(expected) < len(everything)
    _assert_same_records(got, expected)
