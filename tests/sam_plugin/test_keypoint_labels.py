"""KeyPointLabelsConverter: pixel clicks from percent on non-square images, negatives, rotation; no mask."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.base import ControlInfo
from sam_plugin.controls.keypoint_labels import KeyPointLabelsConverter, is_negative
from sam_plugin.controls.prompt import InteractivePrompt, PromptPoint

CONTROL = ControlInfo(name="kp", tag="KeyPointLabels", labels=("Cat", "Not cat"), aliases={"Not cat": "-1"})
CONVERTER = KeyPointLabelsConverter()


def point(x: float, y: float, label: str = "Cat", **extra: object) -> dict:
    return {
        "type": "keypointlabels",
        "from_name": "kp",
        "value": {"x": x, "y": y, "keypointlabels": [label]},
        **extra,
    }


def add_keypoint(prompt: InteractivePrompt, item: dict, negative_labels: tuple = ()) -> None:
    prompt.add(
        CONVERTER.to_prompt(
            item, width=prompt.width, height=prompt.height, control=CONTROL, negative_labels=negative_labels
        )
    )


def test_matches_its_tag_and_results() -> None:
    assert CONVERTER.matches("KeyPointLabels") and not CONVERTER.matches("RectangleLabels")
    assert CONVERTER.matches_result(point(1, 1)) and CONVERTER.gives_prompt and not CONVERTER.carries_mask


def test_percent_to_pixels_on_non_square_image() -> None:
    prompt = InteractivePrompt(width=400, height=100)
    add_keypoint(prompt, point(25.0, 50.0))
    add_keypoint(prompt, point(100.0, 10.0))
    assert prompt.points == [(100.0, 50.0), (400.0, 10.0)]
    assert prompt.point_labels == [1, 1]
    assert prompt.label == "Cat"


def test_one_keypoint_is_one_labelled_point() -> None:
    part = CONVERTER.to_prompt(point(25.0, 50.0), width=400, height=100, control=CONTROL)
    assert part == PromptPoint(x=100.0, y=50.0, positive=True, label="Cat")


def test_is_positive_false_makes_a_negative_click() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    add_keypoint(prompt, point(10, 10, is_positive=False))
    assert prompt.point_labels == [0]
    assert prompt.label is None  # a background click does not name the object


@pytest.mark.parametrize(
    ("label", "negatives", "expected"),
    [("Cat", (), False), ("Not cat", (), True), ("Cat", ("cat",), True), ("Cat", ("background",), False)],
)
def test_negative_by_alias_or_configured_label(label: str, negatives: tuple, expected: bool) -> None:
    assert is_negative(point(1, 1, label), CONTROL, negatives) is expected
    part = CONVERTER.to_prompt(
        point(1, 1, label), width=10, height=10, control=CONTROL, negative_labels=negatives
    )
    assert isinstance(part, PromptPoint) and part.positive is not expected


def test_rotated_image_is_rejected_with_the_fix() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    with pytest.raises(InvalidInput, match="rotate back to 0"):
        add_keypoint(prompt, point(1, 1, image_rotation=90))


def test_missing_coordinates_are_rejected() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    with pytest.raises(InvalidInput, match="value.y"):
        add_keypoint(prompt, {"type": "keypointlabels", "value": {"x": 1}})


def test_a_keypoint_cannot_carry_a_mask() -> None:
    with pytest.raises(
        InvalidInput, match=r"<KeyPointLabels> cannot carry a mask.*<BrushLabels> or <PolygonLabels>"
    ):
        CONVERTER.from_mask(
            np.ones((2, 2), dtype=bool), from_name="kp", to_name="image", label=None, score=1.0
        )
