"""The one list of control-tag converters, and the lookups the plugin uses.

The rest of the plugin never branches on tag names: the label config parser
keeps the controls some converter :meth:`~ControlConverter.matches`, the
interactive request gives each context result to the converter of its
``type``, and masks go to the output control's converter. A new tag is one
module with a :class:`~sam_plugin.controls.base.ControlConverter` subclass
plus one entry in :data:`CONVERTERS`.
"""

from __future__ import annotations

from typing import Any

from backend.api.errors import InvalidInput
from sam_plugin.controls.base import ControlConverter
from sam_plugin.controls.brush_labels import BrushLabelsConverter
from sam_plugin.controls.keypoint_labels import KeyPointLabelsConverter
from sam_plugin.controls.polygon_labels import PolygonLabelsConverter
from sam_plugin.controls.rectangle_labels import RectangleLabelsConverter
from sam_plugin.controls.text_area import TextAreaConverter

KEYPOINT_LABELS = KeyPointLabelsConverter()
RECTANGLE_LABELS = RectangleLabelsConverter()
TEXT_AREA = TextAreaConverter()
BRUSH_LABELS = BrushLabelsConverter()
POLYGON_LABELS = PolygonLabelsConverter()

CONVERTERS: tuple[ControlConverter, ...] = (
    KEYPOINT_LABELS,
    RECTANGLE_LABELS,
    TEXT_AREA,
    BRUSH_LABELS,  # output tags in order of preference: SAM_OUTPUT=auto takes the first one the config has
    POLYGON_LABELS,
)
"""Every control tag the plugin supports, one converter each."""


def find_converter(tag: str) -> ControlConverter | None:
    """The converter of control tag ``tag``, or ``None`` when the plugin does not use that tag."""
    for converter in CONVERTERS:
        if converter.matches(tag):
            return converter
    return None


def converter_for(tag: str) -> ControlConverter:
    """The converter of control tag ``tag``.

    Raises:
        InvalidInput: The plugin has no converter for ``tag``; the message lists the tags it supports.
    """
    converter = find_converter(tag)
    if converter is None:
        raise InvalidInput(
            f"the SAM plugin does not support the <{tag}> control tag; it reads prompts from "
            + ", ".join(f"<{t}>" for t in prompt_tags())
            + " and writes masks into "
            + " or ".join(f"<{t}>" for t in output_tags())
        )
    return converter


def prompt_converter_for(result: dict[str, Any]) -> ControlConverter | None:
    """The converter that turns ``result`` into a prompt part, or ``None`` for results that are no prompt
    (a brush stroke, a previous mask, a tag the plugin does not use)."""
    for converter in CONVERTERS:
        if converter.gives_prompt and converter.matches_result(result):
            return converter
    return None


def is_prompt_result(result: dict[str, Any]) -> bool:
    """Whether ``result`` comes from a prompt tag (KeyPointLabels, RectangleLabels, TextArea)."""
    return prompt_converter_for(result) is not None


def output_converters(kind: str = "auto") -> list[ControlConverter]:
    """The converters that write masks, in order of preference.

    Args:
        kind: ``"auto"`` for all of them, or one ``output_kind`` (``"brush"``, ``"polygon"``).
    """
    return [c for c in CONVERTERS if c.carries_mask and kind in ("auto", c.output_kind)]


def prompt_tags() -> list[str]:
    """Names of the control tags that give prompts."""
    return [c.tag for c in CONVERTERS if c.gives_prompt]


def output_tags() -> list[str]:
    """Names of the control tags that receive masks."""
    return [c.tag for c in output_converters()]
