"""Comparing SA-1B records of two segment-everything runs (ours and a reference generator's)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask


def record_mask(record: dict) -> np.ndarray:
    """The ``HxW`` bool mask of a record's COCO RLE ``segmentation``."""
    rle = dict(record["segmentation"])
    rle["counts"] = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return coco_mask.decode(rle).astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 for two empty masks)."""
    return (a & b).sum() / max((a | b).sum(), 1)


def assert_same_records(ours: list[dict], reference: list[dict]) -> None:
    """One-to-one match with mask IoU >= 0.99 and equal scores, points and crop boxes."""
    assert len(ours) == len(reference)
    ours_masks = [record_mask(r) for r in ours]
    unmatched = set(range(len(ours)))
    for ref in reference:
        ref_mask = record_mask(ref)
        match = next((i for i in unmatched if mask_iou(ours_masks[i], ref_mask) >= 0.99), None)
        assert match is not None, f"no mask of ours matches reference mask at {ref['bbox']}"
        unmatched.discard(match)
        mine = ours[match]
        assert mine["predicted_iou"] == pytest.approx(ref["predicted_iou"], abs=1e-4)
        assert mine["stability_score"] == pytest.approx(ref["stability_score"], abs=1e-2)
        assert mine["point_coords"][0] == pytest.approx(ref["point_coords"][0])
        assert mine["crop_box"] == [int(v) for v in ref["crop_box"]]
        assert mine["area"] == pytest.approx(ref["area"], rel=0.01)
        assert np.abs(np.array(mine["bbox"]) - np.array(ref["bbox"])).max() <= 1
