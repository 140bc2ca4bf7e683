"""TextArea -> text prompt."""

from __future__ import annotations

from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.controls.text_area import add_text


def test_text_lines_are_joined_and_blank_text_ignored() -> None:
    prompt = InteractivePrompt(width=1, height=1)
    add_text(prompt, {"type": "textarea", "value": {"text": ["a red car", "  "]}})
    add_text(prompt, {"type": "textarea", "value": {"text": ["a truck"]}})
    assert prompt.text == "a red car, a truck"
    add_text(prompt, {"type": "textarea", "value": {"text": []}})
    assert prompt.text == "a red car, a truck"
