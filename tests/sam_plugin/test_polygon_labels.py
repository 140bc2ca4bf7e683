"""PolygonLabelsConverter: mask -> PolygonLabels results in percent."""

from __future__ import annotations

import numpy as np
import pytest

from sam_plugin.controls.polygon_labels import PolygonLabelsConverter

CONVERTER = PolygonLabelsConverter()


def test_matches_its_tag_and_may_give_several_regions_per_mask() -> None:
    assert CONVERTER.matches("PolygonLabels") and not CONVERTER.matches("Polygon")
    assert CONVERTER.carries_mask and CONVERTER.output_kind == "polygon" and not CONVERTER.one_region_per_mask
    assert not CONVERTER.gives_prompt


def test_rectangle_mask_gives_one_polygon_covering_it_in_percent() -> None:
    mask = np.zeros((50, 200), dtype=bool)
    mask[10:30, 40:120] = True
    results = CONVERTER.from_mask(mask, from_name="poly", to_name="image", label="Car", score=0.5)
    assert len(results) == 1
    points = np.array(results[0]["value"]["points"])
    assert results[0]["value"]["polygonlabels"] == ["Car"]
    assert results[0]["type"] == "polygonlabels" and CONVERTER.matches_result(results[0])
    # back to pixels: the polygon spans the mask's extent (within one pixel)
    xs, ys = points[:, 0] * 200 / 100, points[:, 1] * 50 / 100
    assert xs.min() == pytest.approx(40, abs=1) and xs.max() == pytest.approx(120, abs=1)
    assert ys.min() == pytest.approx(10, abs=1) and ys.max() == pytest.approx(30, abs=1)


def test_two_blobs_give_two_regions() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[2:10, 2:10] = True
    mask[20:30, 20:30] = True
    assert len(CONVERTER.from_mask(mask, from_name="p", to_name="i", label=None, score=1.0)) == 2
