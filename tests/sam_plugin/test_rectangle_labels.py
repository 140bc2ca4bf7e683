"""RectangleLabelsConverter: XYXY pixel boxes; no mask."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.prompt import InteractivePrompt, PromptBox
from sam_plugin.controls.rectangle_labels import RectangleLabelsConverter

CONVERTER = RectangleLabelsConverter()


def rect(x: float, y: float, w: float, h: float, **value: object) -> dict:
    return {
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": ["Car"], **value},
    }


def add_rectangle(prompt: InteractivePrompt, item: dict) -> None:
    prompt.add(CONVERTER.to_prompt(item, width=prompt.width, height=prompt.height))


def test_matches_its_tag_and_results() -> None:
    assert CONVERTER.matches("RectangleLabels") and not CONVERTER.matches("Rectangle")
    assert (
        CONVERTER.matches_result(rect(0, 0, 1, 1)) and CONVERTER.gives_prompt and not CONVERTER.carries_mask
    )


def test_every_box_is_kept_in_pixels_of_a_non_square_image() -> None:
    prompt = InteractivePrompt(width=300, height=100)
    add_rectangle(prompt, rect(10, 20, 50, 30))
    add_rectangle(prompt, rect(0, 0, 100, 100))
    assert [b.box for b in prompt.boxes] == [
        pytest.approx([30.0, 20.0, 180.0, 50.0]),
        pytest.approx([0.0, 0.0, 300.0, 100.0]),
    ]
    assert [b.label for b in prompt.boxes] == ["Car", "Car"]


def test_one_rectangle_is_one_labelled_box() -> None:
    part = CONVERTER.to_prompt(rect(10, 20, 50, 30), width=300, height=100)
    assert isinstance(part, PromptBox) and part.label == "Car"
    assert part.box == pytest.approx([30.0, 20.0, 180.0, 50.0])


def test_rotated_rectangle_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="axis-aligned"):
        add_rectangle(InteractivePrompt(width=10, height=10), rect(1, 1, 5, 5, rotation=30))


def test_empty_rectangle_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="no area"):
        add_rectangle(InteractivePrompt(width=10, height=10), rect(1, 1, 0, 5))


def test_a_rectangle_cannot_carry_a_mask() -> None:
    with pytest.raises(InvalidInput, match="<RectangleLabels> cannot carry a mask"):
        CONVERTER.from_mask(
            np.ones((2, 2), dtype=bool), from_name="box", to_name="image", label=None, score=1.0
        )
