"""TextAreaConverter: text prompt; no mask."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from sam_plugin.controls.prompt import InteractivePrompt, PromptText
from sam_plugin.controls.text_area import TextAreaConverter

CONVERTER = TextAreaConverter()


def add_text(prompt: InteractivePrompt, item: dict) -> None:
    prompt.add(CONVERTER.to_prompt(item, width=prompt.width, height=prompt.height))


def test_matches_its_tag_and_results() -> None:
    assert CONVERTER.matches("TextArea") and not CONVERTER.matches("Text")
    assert (
        CONVERTER.matches_result({"type": "textarea"})
        and CONVERTER.gives_prompt
        and not CONVERTER.carries_mask
    )


def test_text_lines_are_joined_and_blank_text_ignored() -> None:
    prompt = InteractivePrompt(width=1, height=1)
    add_text(prompt, {"type": "textarea", "value": {"text": ["a red car", "  "]}})
    add_text(prompt, {"type": "textarea", "value": {"text": ["a truck"]}})
    assert prompt.text == "a red car, a truck"
    assert prompt.latest_text == "a truck"  # a SAM 3 concept: the entry typed last
    add_text(prompt, {"type": "textarea", "value": {"text": []}})
    assert prompt.text == "a red car, a truck"


def test_one_result_is_one_text_and_blank_is_nothing() -> None:
    assert CONVERTER.to_prompt({"value": {"text": "a dog"}}, width=1, height=1) == PromptText(
        "a dog", "a dog"
    )
    assert CONVERTER.to_prompt({"value": {"text": [" "]}}, width=1, height=1) is None


def test_a_text_area_cannot_carry_a_mask() -> None:
    with pytest.raises(InvalidInput, match="<TextArea> cannot carry a mask"):
        CONVERTER.from_mask(
            np.ones((2, 2), dtype=bool), from_name="t", to_name="image", label=None, score=1.0
        )
