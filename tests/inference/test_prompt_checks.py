"""The predictors' shared prompt checks (SAM 1 and SAM 2.1): what a notebook user passes by hand.

Tensors are read as values (any dtype, with autograd on), mask counts must
fit the boxes, and a refused call leaves the current image as it was.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.api.errors import InvalidInput
from backend.inference.predictor import SamPredictor
from backend.inference.prompts import check_original_size
from backend.inference.sam2_predictor import Sam2Predictor
from backend.model import build_sam
from backend.model.sam2 import build_sam2, sam2_config
from tests.support.reference import tiny_vit_config

HEIGHT, WIDTH = 60, 84
BOX = [10.0, 12.0, 70.0, 50.0]


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["sam", "sam2.1"])
def predictor(request):
    torch.manual_seed(0)
    if request.param == "sam":
        made: SamPredictor | Sam2Predictor = SamPredictor(build_sam(tiny_vit_config()).eval())
    else:
        made = Sam2Predictor(build_sam2(sam2_config("sam2.1_hiera_t", image_size=256)).eval())
    made.set_image(_image(0))
    return made


def _mask(predictor, count: int) -> np.ndarray:
    side = predictor.low_res_size
    return np.random.default_rng(count).normal(size=(count, 1, side, side)).astype(np.float32)


@pytest.mark.parametrize(
    "boxes, points, masks",
    [(1, False, 2), (2, False, 3), (2, True, 3)],
    ids=["one box, two masks", "two boxes, three masks", "two boxes and a point, three masks"],
)
def test_a_mask_count_that_fits_neither_one_nor_the_boxes_is_refused_by_name(predictor, boxes, points, masks):
    prompt = dict(box=np.array([BOX] * boxes), mask_input=_mask(predictor, masks))
    if points:
        prompt.update(point_coords=[[40, 30]], point_labels=[1])
    with pytest.raises(InvalidInput, match=f"mask_input has {masks} masks for {boxes} box"):
        predictor.predict(**prompt)


def test_one_mask_or_one_per_box_is_answered_per_box(predictor):
    boxes = np.array([BOX, [0, 0, 30, 30]])
    for count in (1, 2):
        out = predictor.predict(box=boxes, mask_input=_mask(predictor, count))
        assert out.masks.shape[:2] == (2, 3)


@pytest.mark.parametrize(
    "as_tensor",
    [
        lambda box: torch.tensor(box),
        lambda box: torch.tensor(box, requires_grad=True),
        lambda box: torch.tensor(box, dtype=torch.bfloat16),
    ],
    ids=["float32", "requires_grad", "bfloat16"],
)
def test_a_box_given_as_a_1d_tensor_gets_the_lists_answer(predictor, as_tensor):
    expected = predictor.predict(box=BOX)  # whole numbers: exact in bfloat16 too
    out = predictor.predict(box=as_tensor(BOX))
    np.testing.assert_array_equal(out.masks, expected.masks)
    np.testing.assert_array_equal(out.scores, expected.scores)


def test_points_and_mask_input_that_require_grad_are_read_as_values(predictor):
    coords, mask = [[40.0, 30.0]], _mask(predictor, 1)
    expected = predictor.predict(point_coords=coords, point_labels=[1], mask_input=mask)
    out = predictor.predict(
        point_coords=torch.tensor(coords, requires_grad=True),
        point_labels=torch.tensor([1]),
        mask_input=torch.tensor(mask, requires_grad=True),
    )
    np.testing.assert_array_equal(out.masks, expected.masks)


@pytest.mark.parametrize("labels", [[[1]], 1], ids=["nested", "scalar"])
def test_labels_that_are_not_a_flat_list_say_so(predictor, labels):
    with pytest.raises(InvalidInput, match=r"labels must be a flat list .* got shape \[(1, 1)?\]"):
        predictor.predict(point_coords=[[40, 30]], point_labels=labels)


def test_points_without_labels_are_refused_by_the_tensor_path(predictor):
    coords = torch.tensor([[[40.0, 30.0]]])
    call = predictor.decode_torch if isinstance(predictor, Sam2Predictor) else predictor.predict_torch
    with pytest.raises(InvalidInput, match="points and labels go together"):
        call(coords, None)


@pytest.mark.parametrize(
    "size, message",
    [
        ((HEIGHT,), "two whole numbers"),
        (HEIGHT, "two whole numbers"),
        ((float("nan"), WIDTH), "two whole numbers"),
        ((HEIGHT + 0.5, WIDTH), "two whole numbers"),
        ((0, WIDTH), "positive"),
    ],
    ids=["one number", "a scalar", "NaN", "a fraction", "zero"],
)
def test_a_bad_original_size_is_refused_and_the_current_image_stays(predictor, size, message):
    before = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    other = predictor.compute_embedding(_image(1))
    with pytest.raises(InvalidInput, match=message):
        predictor.set_embedding(other, original_size=size)
    after = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    assert predictor.original_size == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(after.masks, before.masks)
    np.testing.assert_array_equal(after.scores, before.scores)


def test_whole_sizes_of_any_number_type_are_accepted():
    assert check_original_size((np.int64(3), 4.0)) == (3, 4)
    assert check_original_size(torch.tensor([3, 4])) == (3, 4)
