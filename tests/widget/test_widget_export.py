"""COCO export / import and the atomic instance PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from backend.api.errors import InvalidInput
from widget.export import from_coco, instance_map, load_masks, load_png, mask_bbox_xywh, save_png, to_coco
from widget.state import AcceptedMask


def masks() -> list[AcceptedMask]:
    a = np.zeros((6, 8), dtype=bool)
    a[1:3, 2:5] = True
    b = np.zeros((6, 8), dtype=bool)
    b[2:6, 4:8] = True
    return [AcceptedMask(a, "cat", 0.9), AcceptedMask(b, "zebra", 0.7)]


def test_bbox_is_xywh_of_the_pixels() -> None:
    assert mask_bbox_xywh(masks()[0].mask) == [2.0, 1.0, 3.0, 2.0]
    assert mask_bbox_xywh(np.zeros((3, 3), dtype=bool)) == [0.0, 0.0, 0.0, 0.0]


def test_to_coco_uses_pycocotools_rle_and_label_categories() -> None:
    coco = to_coco(masks(), labels=["dog", "cat"], image_size=(8, 6), file_name="x.jpg")
    assert coco["images"] == [{"id": 1, "width": 8, "height": 6, "file_name": "x.jpg"}]
    assert coco["categories"] == [
        {"id": 1, "name": "dog"},
        {"id": 2, "name": "cat"},
        {"id": 3, "name": "zebra"},
    ]
    for ann, kept in zip(coco["annotations"], masks(), strict=True):
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), kept.mask)
        assert ann["area"] == kept.mask.sum()
        assert ann["bbox"] == coco_mask.toBbox(rle).tolist()
    assert [a["category_id"] for a in coco["annotations"]] == [2, 3]


def test_from_coco_inverts_to_coco() -> None:
    back = from_coco(to_coco(masks(), labels=[], image_size=(8, 6)), image_size=(8, 6))
    assert [(m.label, m.score) for m in back] == [("cat", pytest.approx(0.9)), ("zebra", pytest.approx(0.7))]
    for m, kept in zip(back, masks(), strict=True):
        np.testing.assert_array_equal(m.mask, kept.mask)
    with pytest.raises(InvalidInput, match="image is 9x6"):
        from_coco(to_coco(masks(), labels=[], image_size=(8, 6)), image_size=(9, 6))


def test_png_round_trip_later_masks_on_top(tmp_path: Path) -> None:
    path = save_png(tmp_path / "m.png", masks(), (8, 6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]
    ids = instance_map(masks(), (8, 6))
    assert ids[2, 4] == 2 and ids[1, 2] == 1 and ids[0, 0] == 0
    loaded = load_png(path, label="obj", image_size=(8, 6))
    np.testing.assert_array_equal(loaded[1].mask, masks()[1].mask)
    np.testing.assert_array_equal(loaded[0].mask, masks()[0].mask & ~masks()[1].mask)


def test_png_limits_and_bad_paths(tmp_path: Path) -> None:
    many = [AcceptedMask(np.zeros((2, 2), dtype=bool), "a", 1.0)] * 256
    with pytest.raises(InvalidInput, match="to_coco"):
        save_png(tmp_path / "m.png", many, (2, 2))
    assert not any(tmp_path.iterdir())
    with pytest.raises(InvalidInput, match="no PNG file"):
        load_png(tmp_path / "missing.png", label="a", image_size=(2, 2))


def test_coco_score_is_a_probability_and_the_raw_scores_ride_along() -> None:
    mask = masks()[0].mask
    kept = [
        AcceptedMask(mask, "cat", 1.0, raw_scores={"predicted_iou": 1.06}),
        AcceptedMask(mask, "cat", 0.31, raw_scores={"text_similarity": 0.31}),
        AcceptedMask(mask, "cat"),
    ]
    coco = to_coco(kept, labels=["cat"], image_size=(8, 6))
    anns = coco["annotations"]
    assert all(0.0 <= a["score"] <= 1.0 for a in anns)
    assert anns[0]["predicted_iou"] == pytest.approx(1.06) and "text_similarity" not in anns[0]
    assert anns[1]["text_similarity"] == pytest.approx(0.31) and "predicted_iou" not in anns[1]
    assert "predicted_iou" not in anns[2] and anns[2]["score"] == 1.0
    back = from_coco(coco, image_size=(8, 6))
    assert [m.raw_scores for m in back] == [
        {"predicted_iou": pytest.approx(1.06)},
        {"text_similarity": pytest.approx(0.31)},
        {},
    ]


def test_from_coco_clips_scores_of_older_exports() -> None:
    coco = to_coco(masks(), labels=[], image_size=(8, 6))
    coco["annotations"][0]["score"] = 1.008  # written before scores were probabilities
    assert from_coco(coco, image_size=(8, 6))[0].score == 1.0


def test_load_masks_takes_arrays_coco_and_png(tmp_path: Path) -> None:
    arrays = [m.mask for m in masks()]
    assert [m.label for m in load_masks(arrays, label="x", image_size=(8, 6))] == ["x", "x"]
    coco = to_coco(masks(), labels=[], image_size=(8, 6))
    assert [m.label for m in load_masks(coco, label="x", image_size=(8, 6))] == ["cat", "zebra"]
    path = save_png(tmp_path / "m.png", masks(), (8, 6))
    assert len(load_masks(path, label="x", image_size=(8, 6))) == 2
    assert len(load_masks(str(path), label="x", image_size=(8, 6))) == 2
    with pytest.raises(InvalidInput, match="HxW"):
        load_masks([np.zeros((3, 3), bool)], label="x", image_size=(8, 6))
