"""Masks -> regions of the output control; the prompt label -> output label mapping."""

from __future__ import annotations

import numpy as np
import pytest

from sam_plugin.label_config import parse_label_config
from sam_plugin.regions import mask_regions, output_label, prediction

CONFIG = parse_label_config(
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="mask" toName="image"><Label value="Cat"/><Label value="Dog" alias="2"/></BrushLabels>'
    '<KeyPointLabels name="kp" toName="image"><Label value="Cat"/><Label value="2"/><Label value="Other"/>'
    "</KeyPointLabels></View>"
)


@pytest.mark.parametrize(
    ("prompt_label", "expected"), [("Cat", "Cat"), ("2", "Dog"), ("Other", "Cat"), (None, "Cat")]
)
def test_output_label(prompt_label: str | None, expected: str) -> None:
    assert output_label(CONFIG, prompt_label) == expected


def test_brush_region_and_prediction_score() -> None:
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:5, 3:9] = True
    regions = mask_regions(CONFIG, mask, score=0.6, label="2", extra={"meta": {"text": ["dog"]}})
    assert [(r["from_name"], r["to_name"], r["value"]["brushlabels"], r["meta"]) for r in regions] == [
        ("mask", "image", ["Dog"], {"text": ["dog"]})
    ]
    both = prediction(regions + mask_regions(CONFIG, mask, score=0.2, label=None), "sam-x")
    assert both["score"] == pytest.approx(0.4) and both["model_version"] == "sam-x"
    assert prediction([], "sam-x")["score"] == 0.0


def test_polygon_config_gives_polygon_regions() -> None:
    config = parse_label_config(
        '<View><Image name="image" value="$image"/>'
        '<PolygonLabels name="poly" toName="image"><Label value="Car"/></PolygonLabels></View>'
    )
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 5:30] = True
    [region] = mask_regions(config, mask, score=0.5, label="Car")
    assert region["type"] == "polygonlabels" and region["from_name"] == "poly"
