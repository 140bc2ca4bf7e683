"""RectangleLabels -> box prompts (every box, one object each)."""

from __future__ import annotations

from typing import Any

from backend.api.errors import InvalidInput
from backend.formats.coordinates import ls_rect_to_box
from sam_plugin.controls.prompt import (
    InteractivePrompt,
    PromptBox,
    check_not_rotated,
    first_label,
    read_value,
)

RESULT_TYPE = "rectanglelabels"


def add_rectangle(prompt: InteractivePrompt, item: dict[str, Any]) -> None:
    """Add one ``rectanglelabels`` result to ``prompt`` as an XYXY pixel box.

    Args:
        prompt: Collects the boxes; its ``width`` / ``height`` give the frame.
        item: ``{"type": "rectanglelabels", "value": {"x", "y", "width", "height" (all %), "rotation": 0, ...}}``.

    Raises:
        InvalidInput: Missing fields, an empty box or a rotated box / image.
    """
    check_not_rotated(item)
    value = read_value(item, ("x", "y", "width", "height"))
    if value["width"] <= 0 or value["height"] <= 0:
        raise InvalidInput(
            f"rectangle {item.get('id', '?')} has no area; draw a box with a width and a height"
        )
    box = ls_rect_to_box(value["x"], value["y"], value["width"], value["height"], prompt.width, prompt.height)
    prompt.boxes.append(PromptBox(box=box, label=first_label(item)))
