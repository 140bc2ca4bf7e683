"""KeyPointLabels -> click prompts (positive or negative points)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from backend.formats.coordinates import ls_percent_to_pixels
from sam_plugin.controls.prompt import InteractivePrompt, check_not_rotated, first_label, read_value
from sam_plugin.label_config import ControlInfo

RESULT_TYPE = "keypointlabels"


def is_negative(item: dict[str, Any], control: ControlInfo | None, negative_labels: Collection[str]) -> bool:
    """Whether a keypoint is a background click.

    Negative when Label Studio's ``is_positive`` is false (the annotator held
    Alt), when the label's value or alias is in ``negative_labels``, or when
    the alias starts with ``-`` (the convention of Label Studio's SAM example,
    aliases ``1`` / ``-1``).

    Args:
        item: One ``keypointlabels`` result of the interactive context.
        control: The KeyPointLabels control, for label aliases.
        negative_labels: Label values or aliases that mean "background".
    """
    if item.get("is_positive") is False:
        return True
    label = first_label(item)
    if label is None:
        return False
    alias = control.aliases.get(label) if control is not None else None
    lowered = {name.lower() for name in negative_labels}
    if label.lower() in lowered or (alias is not None and alias.lower() in lowered):
        return True
    return alias is not None and alias.startswith("-")


def add_keypoint(
    prompt: InteractivePrompt,
    item: dict[str, Any],
    control: ControlInfo | None,
    negative_labels: Collection[str],
) -> None:
    """Add one ``keypointlabels`` result to ``prompt`` as a pixel click.

    Args:
        prompt: Collects the clicks; its ``width`` / ``height`` give the frame.
        item: ``{"type": "keypointlabels", "value": {"x": %, "y": %, "keypointlabels": [...]}, "is_positive": bool}``.
        control: The control the item came from (aliases), or ``None``.
        negative_labels: See :func:`is_negative`.

    Raises:
        InvalidInput: Missing coordinates or a rotated image.
    """
    check_not_rotated(item)
    value = read_value(item, ("x", "y"))
    x, y = ls_percent_to_pixels(value["x"], value["y"], prompt.width, prompt.height)
    negative = is_negative(item, control, negative_labels)
    prompt.points.append((x, y))
    prompt.point_labels.append(0 if negative else 1)
    if not negative and prompt.label is None:
        prompt.label = first_label(item)
