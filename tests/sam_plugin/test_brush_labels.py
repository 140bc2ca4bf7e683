"""BrushLabelsConverter: mask <-> BrushLabels result (brush RLE round trip); its results are no prompts."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.brush_labels import BrushLabelsConverter

CONVERTER = BrushLabelsConverter()


def test_matches_its_tag_and_carries_one_region_per_mask() -> None:
    assert CONVERTER.matches("BrushLabels") and not CONVERTER.matches("Brush")
    assert CONVERTER.carries_mask and CONVERTER.output_kind == "brush" and CONVERTER.one_region_per_mask
    assert not CONVERTER.gives_prompt


def test_brush_rle_round_trip_on_a_non_square_mask() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 81)) > 0.6
    [result] = CONVERTER.from_mask(mask, from_name="mask", to_name="image", label="Cat", score=0.75)
    assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
    assert CONVERTER.matches_result(result)
    assert (result["original_width"], result["original_height"]) == (81, 37)
    assert result["value"]["brushlabels"] == ["Cat"] and result["score"] == pytest.approx(0.75)
    np.testing.assert_array_equal(CONVERTER.to_mask(result), mask)


def test_region_without_size_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="original_width"):
        CONVERTER.to_mask({"type": "brushlabels", "value": {"format": "rle", "rle": [1, 2]}})


def test_a_brush_region_is_not_a_prompt() -> None:
    with pytest.raises(InvalidInput, match="<BrushLabels> regions are not SAM prompts.*<KeyPointLabels>"):
        CONVERTER.to_prompt({"type": "brushlabels", "value": {}}, width=1, height=1)
