"""RectangleLabels -> box prompts (every box, one object each)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from backend.api.errors import InvalidInput
from backend.formats.coordinates import ls_rect_to_box
from sam_plugin.controls.base import ControlConverter, ControlInfo
from sam_plugin.controls.keypoint_labels import is_negative
from sam_plugin.controls.prompt import PromptBox, check_not_rotated, first_label, read_value


class RectangleLabelsConverter(ControlConverter):
    """``<RectangleLabels>``: each rectangle is one box prompt, one object per box. Carries no mask.

    On a SAM 3 model the plugin sends rectangles as exemplars of a concept
    instead (every instance like the box): a rectangle with a background label
    is a counter-example.
    """

    tag = "RectangleLabels"
    result_type = "rectanglelabels"
    gives_prompt = True
    prompt_hint = '<RectangleLabels smart="true"> (boxes)'

    def to_prompt(
        self,
        result: dict[str, Any],
        *,
        width: int,
        height: int,
        control: ControlInfo | None = None,
        negative_labels: Collection[str] = (),
    ) -> PromptBox:
        """One rectangle as an XYXY pixel box with its label.

        Args:
            result: ``{"type": "rectanglelabels", "value": {"x", "y", "width", "height" (all %), "rotation": 0, ...}}``.
            width: Image width in pixels.
            height: Image height in pixels.
            control: The control the result came from (label aliases), or ``None``.
            negative_labels: Label values or aliases of counter-example boxes
                (``positive=False``, read by SAM 3 models only), as for keypoints
                (:func:`~sam_plugin.controls.keypoint_labels.is_negative`).

        Raises:
            InvalidInput: Missing fields, an empty box or a rotated box / image.
        """
        check_not_rotated(result)
        value = read_value(result, ("x", "y", "width", "height"))
        if value["width"] <= 0 or value["height"] <= 0:
            raise InvalidInput(
                f"rectangle {result.get('id', '?')} has no area; draw a box with a width and a height"
            )
        box = ls_rect_to_box(value["x"], value["y"], value["width"], value["height"], width, height)
        positive = not is_negative(result, control, negative_labels)
        return PromptBox(box=box, label=first_label(result), positive=positive)
