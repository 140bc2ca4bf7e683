"""RectangleLabels -> XYXY pixel boxes."""

from __future__ import annotations

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.controls.rectangle_labels import add_rectangle


def rect(x: float, y: float, w: float, h: float, **value: object) -> dict:
    return {
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": ["Car"], **value},
    }


def test_every_box_is_kept_in_pixels_of_a_non_square_image() -> None:
    prompt = InteractivePrompt(width=300, height=100)
    add_rectangle(prompt, rect(10, 20, 50, 30))
    add_rectangle(prompt, rect(0, 0, 100, 100))
    assert [b.box for b in prompt.boxes] == [
        pytest.approx([30.0, 20.0, 180.0, 50.0]),
        pytest.approx([0.0, 0.0, 300.0, 100.0]),
    ]
    assert [b.label for b in prompt.boxes] == ["Car", "Car"]


def test_rotated_rectangle_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="axis-aligned"):
        add_rectangle(InteractivePrompt(width=10, height=10), rect(1, 1, 5, 5, rotation=30))


def test_empty_rectangle_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="no area"):
        add_rectangle(InteractivePrompt(width=10, height=10), rect(1, 1, 0, 5))
