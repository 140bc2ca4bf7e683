"""Mask codecs: exact round trips, interoperability with pycocotools and Label Studio, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as coco_mask

from backend.api.errors import InvalidInput
from backend.formats.mask_codecs import (
    MASK_FORMATS,
    as_mask,
    decode_mask,
    encode_mask,
    from_coco_rle,
    from_png,
    from_polygons,
    to_brush_rle,
    to_coco_rle,
    to_png,
    to_polygons,
)

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(lambda hw: arrays(bool, hw))


def _blob(h: int = 120, w: int = 170, seed: int = 0) -> np.ndarray:
    """A smooth random blob: union of a few ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((h, w), bool)
    for _ in range(3):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        out |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _signed_area(flat: list[float]) -> float:
    """Shoelace area; positive for clockwise rings on screen (y down)."""
    x, y = np.asarray(flat).reshape(-1, 2).T
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)


@settings(max_examples=60, deadline=None)
@given(mask=masks, fmt=st.sampled_from(MASK_FORMATS))
def test_every_format_round_trips_exactly(mask, fmt):
    data = encode_mask(mask, fmt)
    out = decode_mask(data, fmt, *mask.shape)
    assert out.dtype == bool and out.shape == mask.shape
    np.testing.assert_array_equal(out, mask)


@pytest.mark.parametrize("fmt", MASK_FORMATS)
@pytest.mark.parametrize("fill", [False, True])
def test_empty_and_full_masks_round_trip(fmt, fill):
    mask = np.full((300, 301), fill)  # 300*301*4 values: brush runs longer than 2**16
    np.testing.assert_array_equal(decode_mask(encode_mask(mask, fmt), fmt, 300, 301), mask)


def test_coco_rle_is_column_major_and_json_ready():
    mask = np.zeros((2, 3), bool)
    mask[0, 1] = True  # column-major order: (0,0) (1,0) (0,1) ... -> runs 2 off, 1 on, 3 off
    np.testing.assert_array_equal(from_coco_rle({"size": [2, 3], "counts": [2, 1, 3]}), mask)
    rle = to_coco_rle(mask)
    assert rle["size"] == [2, 3] and isinstance(rle["counts"], str)
    assert json.loads(json.dumps(rle)) == rle
    assert (
        coco_mask.frPyObjects({"size": [2, 3], "counts": [2, 1, 3]}, 2, 3)["counts"].decode() == rle["counts"]
    )


@settings(max_examples=40, deadline=None)
@given(mask=masks)
def test_pycocotools_decodes_our_rle(mask):
    rle = to_coco_rle(mask)
    theirs = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(theirs.astype(bool), mask)
    assert coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()}) == mask.sum()


def test_brush_rle_is_row_major_rgba_as_label_studio_reads_it():
    from label_studio_sdk.converter.brush import decode_from_annotation, decode_rle

    mask = _blob(40, 70)
    rle = to_brush_rle(mask)
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in rle)
    flat = decode_rle(bytes(rle))
    assert flat.size == 40 * 70 * 4
    np.testing.assert_array_equal(flat.reshape(40, 70, 4)[:, :, 3] > 0, mask)  # row-major, alpha painted
    assert not np.array_equal(flat.reshape(70, 40, 4)[:, :, 3].T > 0, mask)  # column-major reading is wrong
    result = {
        "type": "brushlabels",
        "rle": rle,
        "original_width": 70,
        "original_height": 40,
        "brushlabels": ["a"],
    }
    (layer,) = decode_from_annotation("tag", [result]).values()
    np.testing.assert_array_equal(layer > 0, mask)


def test_coco_and_brush_runs_differ_on_a_non_square_mask():
    from label_studio_sdk.converter.brush import decode_rle

    mask = np.zeros((3, 5), bool)
    mask[0, :] = True  # row-major: 5 on, 10 off; column-major: (1 on, 2 off) five times
    column_major = {"size": [3, 5], "counts": [0, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]}
    np.testing.assert_array_equal(from_coco_rle(column_major), mask)
    assert to_coco_rle(mask)["counts"] == coco_mask.frPyObjects(column_major, 3, 5)["counts"].decode()
    alpha = decode_rle(bytes(to_brush_rle(mask)))[3::4]
    np.testing.assert_array_equal(alpha > 0, [True] * 5 + [False] * 10)


def test_png_is_one_bit_and_other_mask_images_are_read():
    mask = _blob(30, 50)
    data = to_png(mask)
    assert Image.open(io.BytesIO(data)).mode == "1"
    grey = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(grey, format="PNG")
    np.testing.assert_array_equal(from_png(grey.getvalue()), mask)
    rgba = np.zeros((30, 50, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 128)  # a coloured, half transparent overlay
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    np.testing.assert_array_equal(from_png(buf.getvalue()), mask)
    with pytest.raises(InvalidInput, match="50x30"):
        from_png(data, 50, 30)


def test_polygons_trace_holes_with_opposite_direction_and_pixel_exact_areas():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False
    polygons = to_polygons(mask)
    areas = sorted(_signed_area(p) for p in polygons)
    assert areas == [-9.0, 49.0]
    np.testing.assert_array_equal(from_polygons(polygons, 9, 9), mask)
    (outer,) = to_polygons(mask, holes=False)
    assert _signed_area(outer) == 49.0


@pytest.mark.parametrize(
    "mask", [np.eye(6, dtype=bool), np.fliplr(np.eye(6, dtype=bool))], ids=["main", "anti"]
)
def test_diagonal_neighbours_form_one_polygon(mask):
    polygons = to_polygons(mask)
    assert len(polygons) == 1
    np.testing.assert_array_equal(from_polygons(polygons, 6, 6), mask)


@pytest.mark.parametrize("seed", range(5))
def test_simplified_polygons_stay_close_to_blobs(seed):
    mask = _blob(seed=seed)
    exact = to_polygons(mask)
    simple = to_polygons(mask, tolerance=1.0)
    assert sum(len(p) for p in simple) < sum(len(p) for p in exact) / 3
    assert _iou(from_polygons(simple, *mask.shape), mask) >= 0.9
    # COCO tools read our polygons too (pycocotools rasterises slightly differently: IoU, not equality).
    h, w = mask.shape
    theirs = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(exact, h, w))).astype(bool)
    assert _iou(theirs, mask) >= 0.9


def test_polygons_accept_point_pairs_and_fill_pixel_centres():
    square = [[1, 1], [4, 1], [4, 3], [1, 3]]  # pixel corners: columns 1..3, rows 1..2
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(from_polygons([square], 5, 6), expected)
    np.testing.assert_array_equal(from_polygons([np.ravel(square).tolist()], 5, 6), expected)
    np.testing.assert_array_equal(
        from_polygons([[-5, -5, 50, -5, 50, 50, -5, 50]], 5, 6), np.ones((5, 6), bool)
    )
    assert to_polygons(np.zeros((4, 4), bool)) == []


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        # counts short of 15 pixels: pycocotools alone would return garbage
        ({"size": [3, 5], "counts": "3"}, "coco_rle"),
        ({"size": [3, 5], "counts": "zzzz"}, "coco_rle"),
        ({"size": [3, 5], "counts": "é"}, "coco_rle"),
        ({"size": [3, 5], "counts": [1, 2, 3]}, "coco_rle"),
        ({"size": [3, 5], "counts": [20, -5]}, "coco_rle"),
        ({"counts": "3"}, "coco_rle"),
        ([0, 0, 0], "brush_rle"),
        ([300, 1, 2, 3, 4, 5, 6, 7, 8], "brush_rle"),
        ("not a list", "brush_rle"),
        ([[0, 0, 1, 1]], "polygons"),  # 2 vertices
        ([[0, 0, 1, 1, 2]], "polygons"),  # odd number of coordinates
        ([[0, 0, float("nan"), 1, 2, 2]], "polygons"),
        ("x", "polygons"),
        (b"not a png", "png"),
        ("text", "png"),
    ],
)
def test_bad_encoded_masks_raise_invalid_input(data, fmt):
    with pytest.raises(InvalidInput):
        decode_mask(data, fmt, 3, 5)


def test_size_mismatch_and_missing_size_are_reported():
    rle = to_coco_rle(np.ones((3, 5), bool))
    with pytest.raises(InvalidInput, match="5x3"):
        decode_mask(rle, "coco_rle", 4, 5)
    np.testing.assert_array_equal(decode_mask(rle, "coco_rle"), np.ones((3, 5), bool))
    for fmt in ("brush_rle", "polygons"):
        with pytest.raises(InvalidInput, match="height and width"):
            decode_mask(encode_mask(np.ones((3, 5), bool), fmt), fmt)


def test_unknown_format_lists_the_valid_ones():
    with pytest.raises(InvalidInput) as info:
        encode_mask(np.ones((2, 2), bool), "jpeg")
    assert all(name in str(info.value) for name in MASK_FORMATS)
    with pytest.raises(InvalidInput, match="coco_rle"):
        decode_mask({}, "rle")


@pytest.mark.parametrize(
    "mask", [np.ones((2, 2, 2), bool), np.zeros((0, 3), bool), np.array([[0.5, 1.0]]), np.array([["a"]])]
)
def test_bad_masks_are_rejected(mask):
    with pytest.raises(InvalidInput):
        as_mask(mask)


def test_integer_and_binary_float_masks_are_accepted():
    np.testing.assert_array_equal(
        as_mask(np.array([[0, 2], [255, 0]], np.uint8)), [[False, True], [True, False]]
    )
    np.testing.assert_array_equal(as_mask(np.array([[0.0, 1.0]])), [[False, True]])
