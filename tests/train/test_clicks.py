from __future__ import annotations

import numpy as np
import pytest

from backend.train.clicks import corrective_click, distance_inside, first_click, region_centre


def _brute_force(region: np.ndarray) -> np.ndarray:
    padded = np.pad(region, 1)
    ys, xs = np.nonzero(~padded)
    out = np.zeros(region.shape)
    for y, x in zip(*np.nonzero(region), strict=True):
        out[y, x] = np.sqrt(((ys - (y + 1)) ** 2 + (xs - (x + 1)) ** 2).min())
    return out


@pytest.mark.parametrize("seed", range(5))
def test_distance_transform_is_exact_euclidean(seed):
    region = np.random.default_rng(seed).random((17, 23)) < 0.85
    assert np.allclose(distance_inside(region), _brute_force(region))


def test_distance_counts_the_image_border_as_outside():
    region = np.ones((5, 5), dtype=bool)
    assert distance_inside(region)[2, 2] == 3.0
    assert distance_inside(region)[0, 0] == 1.0


def test_centre_of_a_rectangle_is_its_middle():
    region = np.zeros((20, 30), dtype=bool)
    region[5:10, 10:25] = True  # 5 rows x 15 columns: the middle row is 7
    x, y, depth = region_centre(region)
    assert y == 7 and 12 <= x <= 22 and depth == 3.0


def test_first_click_is_positive_at_the_centre_and_none_for_empty():
    target = np.zeros((11, 11), dtype=bool)
    target[1:10, 1:10] = True
    click = first_click(target)
    assert (click.x, click.y, click.positive) == (5, 5, True)
    assert first_click(np.zeros((4, 4), dtype=bool)) is None


def test_corrective_click_goes_to_the_larger_error():
    target = np.zeros((30, 30), dtype=bool)
    target[0:20, 0:20] = True
    predicted = target.copy()
    predicted[5:15, 5:15] = False  # big miss inside the object
    predicted[25:27, 25:27] = True  # small false positive
    click = corrective_click(predicted, target)
    assert click.positive and 5 <= click.x < 15 and 5 <= click.y < 15


def test_corrective_click_is_negative_on_a_larger_false_positive():
    target = np.zeros((30, 30), dtype=bool)
    target[0:5, 0:5] = True
    predicted = target.copy()
    predicted[10:30, 10:30] = True
    click = corrective_click(predicted, target)
    assert not click.positive and predicted[click.y, click.x] and not target[click.y, click.x]


def test_no_click_when_prediction_is_exact():
    target = np.eye(6, dtype=bool)
    assert corrective_click(target.copy(), target) is None
