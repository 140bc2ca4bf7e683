"""Building blocks of segment-everything: point grids, crop boxes, small-region removal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.crops import CropBox, boxes_touching_crop_edge, crop_boxes
from backend.inference.mask_regions import remove_small_regions
from backend.inference.point_grids import layer_point_grids, point_grid


def test_point_grid_centres_cells_row_by_row():
    grid = point_grid(4)
    assert grid.shape == (16, 2)
    assert grid[:4, 1] == pytest.approx([0.125] * 4)  # first row, x varying
    assert grid[:4, 0] == pytest.approx([0.125, 0.375, 0.625, 0.875])
    assert grid.min() > 0 and grid.max() < 1


def test_layer_grids_are_downscaled():
    sides = [int(np.sqrt(len(g))) for g in layer_point_grids(16, 2, 2)]
    assert sides == [16, 8, 4]


@pytest.mark.parametrize("height,width", [(150, 200), (3000, 4000), (513, 97)])
def test_crop_layers_cover_the_image_with_overlap(height, width):
    crops = crop_boxes(height, width, 2, 512 / 1500)
    assert crops[0] == CropBox((0, 0, width, height), 0)
    for layer, per_side in ((1, 2), (2, 4)):
        boxes = np.array([c.box for c in crops if c.layer == layer])
        assert len(boxes) == per_side**2
        covered = np.zeros((height, width), dtype=int)
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            covered[y1:y2, x1:x2] += 1
        assert covered.min() >= 1
        assert covered.max() >= 2  # neighbours overlap


def test_boxes_touching_an_inner_crop_edge_are_flagged():
    crop = CropBox((0, 0, 110, 80), 1)  # top-left crop of a 200x150 image
    boxes = torch.tensor([[5, 5, 50, 40], [60, 10, 109, 40], [0, 0, 30, 79]])
    assert boxes_touching_crop_edge(boxes, crop, 150, 200).tolist() == [False, True, True]
    full = CropBox((0, 0, 200, 150), 0)
    assert not boxes_touching_crop_edge(torch.tensor([[0, 0, 199, 149]]), full, 150, 200).any()


def _mask_with_hole_and_island() -> np.ndarray:
    mask = np.zeros((60, 60), dtype=bool)
    mask[10:40, 10:40] = True  # 900-pixel object
    mask[20:23, 20:23] = False  # 9-pixel hole
    mask[50:52, 50:52] = True  # 4-pixel island
    return mask


def test_small_holes_are_filled():
    mask = _mask_with_hole_and_island()
    filled, changed = remove_small_regions(mask, 20, "holes")
    assert changed
    assert filled[20:23, 20:23].all()
    assert filled[50:52, 50:52].all()  # islands untouched
    assert (filled ^ mask).sum() == 9


def test_small_islands_are_dropped_and_the_largest_kept_when_all_are_small():
    mask = _mask_with_hole_and_island()
    cleaned, changed = remove_small_regions(mask, 20, "islands")
    assert changed and not cleaned[50:52, 50:52].any() and cleaned[10:20, 10:40].all()
    only_largest, changed = remove_small_regions(mask, 10_000, "islands")
    assert changed and only_largest.sum() == 900 - 9


def test_nothing_small_means_unchanged():
    mask = _mask_with_hole_and_island()
    same, changed = remove_small_regions(mask, 3, "islands")
    assert not changed and same is mask


def test_bad_grid_sizes_are_refused():
    with pytest.raises(InvalidInput, match="points_per_side must be >= 1"):
        point_grid(0)


def test_crops_that_would_be_empty_are_left_out():
    thin = crop_boxes(3, 500, 2, 512 / 1500)
    assert all(c.box[2] > c.box[0] and c.box[3] > c.box[1] for c in thin)
    assert len(crop_boxes(600, 800, 2, 512 / 1500)) == 1 + 4 + 16, "an ordinary image keeps every crop"
