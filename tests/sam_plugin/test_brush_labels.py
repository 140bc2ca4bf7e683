"""Mask <-> BrushLabels result (brush RLE round trip)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.brush_labels import brush_result_to_mask, mask_to_brush_result


def test_brush_rle_round_trip_on_a_non_square_mask() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 81)) > 0.6
    result = mask_to_brush_result(mask, from_name="mask", to_name="image", label="Cat", score=0.75)
    assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
    assert (result["original_width"], result["original_height"]) == (81, 37)
    assert result["value"]["brushlabels"] == ["Cat"] and result["score"] == pytest.approx(0.75)
    np.testing.assert_array_equal(brush_result_to_mask(result), mask)


def test_region_without_size_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="original_width"):
        brush_result_to_mask({"type": "brushlabels", "value": {"format": "rle", "rle": [1, 2]}})
