"""KeyPointLabels -> click prompts (positive or negative points)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from backend.formats.coordinates import ls_percent_to_pixels
from sam_plugin.controls.base import ControlConverter, ControlInfo
from sam_plugin.controls.prompt import PromptPoint, check_not_rotated, first_label, read_value


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


class KeyPointLabelsConverter(ControlConverter):
    """``<KeyPointLabels>``: each keypoint is one click, positive or background. Carries no mask."""

    tag = "KeyPointLabels"
    result_type = "keypointlabels"
    gives_prompt = True
    prompt_hint = '<KeyPointLabels smart="true"> (clicks)'

    def to_prompt(
        self,
        result: dict[str, Any],
        *,
        width: int,
        height: int,
        control: ControlInfo | None = None,
        negative_labels: Collection[str] = (),
    ) -> PromptPoint:
        """One keypoint as a pixel click.

        Args:
            result: ``{"type": "keypointlabels", "value": {"x": %, "y": %, "keypointlabels": [...]}, "is_positive": bool}``.
            width: Image width in pixels.
            height: Image height in pixels.
            control: The control the result came from (aliases), or ``None``.
            negative_labels: See :func:`is_negative`.

        Raises:
            InvalidInput: Missing coordinates or a rotated image.
        """
        check_not_rotated(result)
        value = read_value(result, ("x", "y"))
        x, y = ls_percent_to_pixels(value["x"], value["y"], width, height)
        positive = not is_negative(result, control, negative_labels)
        return PromptPoint(x=x, y=y, positive=positive, label=first_label(result))
