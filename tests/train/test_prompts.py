from __future__ import annotations

import torch

from backend.train.prompts import error_points, mask_boxes, noisy_boxes, sample_points


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sampled_points_lie_inside_their_region():
    regions = torch.zeros(3, 20, 30, dtype=torch.bool)
    regions[0, 2:5, 10:12] = True
    regions[1, 15, 29] = True
    regions[2, :, :] = True
    for seed in range(20):
        points, found = sample_points(regions, _gen(seed))
        assert found.all()
        for i, (x, y) in enumerate(points.long().tolist()):
            assert regions[i, y, x]


def test_empty_region_is_reported_not_found():
    regions = torch.zeros(2, 8, 8, dtype=torch.bool)
    regions[1, 3, 4] = True
    points, found = sample_points(regions, _gen())
    assert found.tolist() == [False, True]
    assert points[1].tolist() == [4.0, 3.0]


def test_mask_boxes_are_tight():
    masks = torch.zeros(1, 10, 12, dtype=torch.bool)
    masks[0, 2:6, 3:9] = True
    assert mask_boxes(masks).tolist() == [[3.0, 2.0, 8.0, 5.0]]


def test_noisy_boxes_stay_ordered_and_inside_the_image():
    masks = torch.zeros(50, 40, 60, dtype=torch.bool)
    masks[:, 1:39, 0:59] = True
    boxes = noisy_boxes(masks, _gen(), noise=0.5, max_shift=30)
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= 59).all() and (boxes[:, [1, 3]] <= 39).all()
    assert not torch.equal(boxes, mask_boxes(masks)), "noise must move the corners"


def test_noise_is_capped_in_pixels():
    masks = torch.zeros(200, 300, 300, dtype=torch.bool)
    masks[:, 50:250, 50:250] = True
    shift = (noisy_boxes(masks, _gen(), noise=1.0, max_shift=2.0) - mask_boxes(masks)).abs()
    assert shift.max() < 2.0 * 6  # six standard deviations of a 2-pixel noise


def test_error_points_are_labelled_by_the_kind_of_error():
    target = torch.zeros(2, 10, 10, dtype=torch.bool)
    predicted = torch.zeros(2, 10, 10, dtype=torch.bool)
    target[0, 0:5] = True  # object 0: missed entirely -> positive click inside it
    predicted[1, 5:] = True  # object 1: empty target, prediction is background -> negative click
    for seed in range(10):
        points, labels = error_points(predicted, target, _gen(seed))
        assert labels.tolist() == [1, 0]
        x0, y0 = points[0].long().tolist()
        x1, y1 = points[1].long().tolist()
        assert target[0, y0, x0] and predicted[1, y1, x1]


def test_exact_prediction_gets_a_positive_point_inside_the_object():
    target = torch.zeros(1, 10, 10, dtype=torch.bool)
    target[0, 3:6, 3:6] = True
    points, labels = error_points(target.clone(), target, _gen())
    x, y = points[0].long().tolist()
    assert labels.tolist() == [1] and target[0, y, x]
