"""KeyPointLabels -> pixel clicks: percent conversion on non-square images, negatives, rotation."""

from __future__ import annotations

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.keypoint_labels import add_keypoint, is_negative
from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.label_config import ControlInfo

CONTROL = ControlInfo(name="kp", tag="KeyPointLabels", labels=("Cat", "Not cat"), aliases={"Not cat": "-1"})


def point(x: float, y: float, label: str = "Cat", **extra: object) -> dict:
    return {
        "type": "keypointlabels",
        "from_name": "kp",
        "value": {"x": x, "y": y, "keypointlabels": [label]},
        **extra,
    }


def test_percent_to_pixels_on_non_square_image() -> None:
    prompt = InteractivePrompt(width=400, height=100)
    add_keypoint(prompt, point(25.0, 50.0), CONTROL, ())
    add_keypoint(prompt, point(100.0, 10.0), CONTROL, ())
    assert prompt.points == [(100.0, 50.0), (400.0, 10.0)]
    assert prompt.point_labels == [1, 1]
    assert prompt.label == "Cat"


def test_is_positive_false_makes_a_negative_click() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    add_keypoint(prompt, point(10, 10, is_positive=False), CONTROL, ())
    assert prompt.point_labels == [0]
    assert prompt.label is None  # a background click does not name the object


@pytest.mark.parametrize(
    ("label", "negatives", "expected"),
    [("Cat", (), False), ("Not cat", (), True), ("Cat", ("cat",), True), ("Cat", ("background",), False)],
)
def test_negative_by_alias_or_configured_label(label: str, negatives: tuple, expected: bool) -> None:
    assert is_negative(point(1, 1, label), CONTROL, negatives) is expected


def test_rotated_image_is_rejected_with_the_fix() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    with pytest.raises(InvalidInput, match="rotate back to 0"):
        add_keypoint(prompt, point(1, 1, image_rotation=90), CONTROL, ())


def test_missing_coordinates_are_rejected() -> None:
    prompt = InteractivePrompt(width=10, height=10)
    with pytest.raises(InvalidInput, match="value.y"):
        add_keypoint(prompt, {"type": "keypointlabels", "value": {"x": 1}}, CONTROL, ())
