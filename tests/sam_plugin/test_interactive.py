"""collect_prompt / segment: the whole context becomes one request; errors name the fix."""

from __future__ import annotations

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.interactive import collect_prompt, segment
from sam_plugin.label_config import EXAMPLE_CONFIG, parse_label_config
from tests.sam_plugin.fakes import ScriptedSamClient, png_bytes

CONFIG = parse_label_config(EXAMPLE_CONFIG)


def click(x: float, y: float, positive: bool = True) -> dict:
    return {
        "type": "keypointlabels",
        "from_name": "click",
        "is_positive": positive,
        "value": {"x": x, "y": y, "keypointlabels": ["Object"]},
    }


def box(x: float, y: float, w: float, h: float) -> dict:
    return {
        "type": "rectanglelabels",
        "from_name": "box",
        "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": ["Object"]},
    }


def test_points_boxes_and_other_regions() -> None:
    previous_mask = {"type": "brushlabels", "value": {"format": "rle", "rle": [1]}}
    prompt = collect_prompt(
        [click(50, 50), previous_mask, box(0, 0, 50, 50), click(75, 75, positive=False)],
        CONFIG,
        width=200,
        height=100,
        negative_labels=(),
    )
    assert prompt.points == [(100.0, 50.0), (150.0, 75.0)] and prompt.point_labels == [1, 0]
    assert [b.box for b in prompt.boxes] == [[0.0, 0.0, 100.0, 50.0]]
    assert not prompt.multimask


@pytest.mark.parametrize(
    ("results", "needle"),
    [([], "no SAM prompt"), (["x"], "must be objects")],
)
def test_unusable_context(results: list, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        collect_prompt(results, CONFIG, width=10, height=10, negative_labels=())


def test_points_apply_to_every_box_and_each_box_keeps_its_record(sam_client: ScriptedSamClient) -> None:
    image_id = sam_client.add_image(png_bytes(40, 20)).image_id
    prompt = collect_prompt(
        [box(0, 0, 50, 50), box(50, 50, 50, 50), click(10, 10)],
        CONFIG,
        width=40,
        height=20,
        negative_labels=(),
    )
    objects = segment(sam_client, image_id, prompt)
    assert [o.prompt["boxes"] for o in objects] == [[[0.0, 0.0, 20.0, 10.0]], [[20.0, 10.0, 40.0, 20.0]]]
    assert all(o.prompt["points"] == [[4.0, 2.0]] for o in objects)
    assert sam_client.calls[-1]["multimask"] is False and sam_client.calls[-1]["points"] == [[4.0, 2.0]]
