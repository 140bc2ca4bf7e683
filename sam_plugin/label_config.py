"""Which tags of a Label Studio labeling config the SAM plugin uses.

Parsed with ``label_studio_sdk.label_interface.LabelInterface``. A config the
plugin can work with has one ``Image`` and an output control (``BrushLabels``
or ``PolygonLabels``) pointing at it; the prompts come from ``KeyPointLabels``
(clicks), ``RectangleLabels`` (boxes) and ``TextArea`` (text) controls on the
same image. Which tags count is the converter registry's say
(:mod:`sam_plugin.controls.registry`); controls of other tags are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.api.errors import InvalidInput
from sam_plugin.controls.base import ControlConverter, ControlInfo
from sam_plugin.controls.registry import (
    CONVERTERS,
    KEYPOINT_LABELS,
    RECTANGLE_LABELS,
    TEXT_AREA,
    converter_for,
    find_converter,
    output_converters,
)
from sam_plugin.settings import OutputKind

EXAMPLE_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="mask" toName="image">
    <Label value="Object" background="#FF0000"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="Object" smart="true" background="#00FF00"/>
    <Label value="Background" smart="true" background="#0000FF"/>
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="Object" smart="true" background="#FFA500"/>
  </RectangleLabels>
</View>"""
"""The labeling config the docs tell users to paste (also used by the tests)."""


@dataclass(frozen=True)
class SamLabelConfig:
    """The parts of a labeling config the plugin needs.

    Attributes:
        image_name: ``name`` of the ``Image`` tag (the ``to_name`` of results).
        image_key: Task data key holding the image URL (``value="$image"`` -> ``image``).
        output: The control that receives the masks (BrushLabels or PolygonLabels).
        prompts: The prompt controls on the image (KeyPointLabels clicks,
            RectangleLabels boxes, TextArea text), in config order.
    """

    image_name: str
    image_key: str
    output: ControlInfo
    prompts: tuple[ControlInfo, ...] = ()

    @property
    def output_converter(self) -> ControlConverter:
        """The converter that turns masks into the output control's results."""
        return converter_for(self.output.tag)

    @property
    def output_kind(self) -> str:
        """``"brush"`` or ``"polygon"``."""
        return str(self.output_converter.output_kind)

    @property
    def prompt_controls(self) -> dict[str, ControlInfo]:
        """Control name -> info, for every prompt control."""
        return {c.name: c for c in self.prompts}

    def prompts_of(self, converter: ControlConverter) -> tuple[ControlInfo, ...]:
        """The prompt controls ``converter`` handles."""
        return tuple(c for c in self.prompts if converter.matches(c.tag))

    @property
    def keypoints(self) -> tuple[ControlInfo, ...]:
        """KeyPointLabels controls on the image (click prompts)."""
        return self.prompts_of(KEYPOINT_LABELS)

    @property
    def rectangles(self) -> tuple[ControlInfo, ...]:
        """RectangleLabels controls on the image (box prompts)."""
        return self.prompts_of(RECTANGLE_LABELS)

    @property
    def text_areas(self) -> tuple[ControlInfo, ...]:
        """TextArea controls on the image (text prompts)."""
        return self.prompts_of(TEXT_AREA)


def _control_info(control: object) -> ControlInfo:
    labels_attrs = getattr(control, "labels_attrs", None) or {}
    labels: list[str] = []
    aliases: dict[str, str] = {}
    for label_tag in labels_attrs.values():
        attrs = getattr(label_tag, "attr", {}) or {}
        value = attrs.get("value")
        if value is None:
            continue
        labels.append(str(value))
        if attrs.get("alias") is not None:
            aliases[str(value)] = str(attrs["alias"])
    return ControlInfo(name=control.name, tag=control.tag, labels=tuple(labels), aliases=aliases)  # type: ignore[attr-defined]


def _load_interface(config: str | None) -> Any:
    """The SDK's ``LabelInterface`` of a config.

    Raises:
        InvalidInput: The config is empty or not valid XML.
    """
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise InvalidInput(
            "the labeling config is empty; paste the SAM labeling config from docs/labelstudio.md"
        )
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises several unrelated types for bad XML
        raise InvalidInput(f"the labeling config is not valid XML: {exc}") from exc


def _find_image(interface: Any) -> tuple[str, str]:
    """``(name, task data key)`` of the config's first ``Image`` tag.

    Raises:
        InvalidInput: No ``Image`` tag, or one without ``value="$<task field>"``.
    """
    images = [obj for obj in interface.objects if obj.tag == "Image"]
    if not images:
        raise InvalidInput('the labeling config has no <Image> tag; add <Image name="image" value="$image"/>')
    image = images[0]
    key = (image.value or "").lstrip("$")
    if not key:
        raise InvalidInput(
            f'the <Image name="{image.name}"> tag needs value="$<task field>", e.g. value="$image"'
        )
    return image.name, key


def _supported_controls_on(interface: Any, image_name: str) -> list[ControlInfo]:
    """The controls pointing at the image that some converter handles, in config order."""
    return [
        _control_info(c)
        for c in interface.controls
        if image_name in (c.to_name or []) and find_converter(c.tag) is not None
    ]


def _pick_output(controls: list[ControlInfo], output: OutputKind, image_name: str) -> ControlInfo:
    """The control that receives the masks: the first of the preferred output tags the config has.

    Raises:
        InvalidInput: No control of an allowed output tag; the message names the tags.
    """
    wanted = output_converters(output)
    outputs = [info for converter in wanted for info in controls if converter.matches(info.tag)]
    if not outputs:
        tags = " or ".join(f"<{converter.tag}>" for converter in wanted)
        raise InvalidInput(
            f'the labeling config has no {tags} tag with toName="{image_name}"; '
            "the SAM plugin writes its masks into it (see docs/labelstudio.md)"
        )
    return outputs[0]


def parse_label_config(config: str | None, *, output: OutputKind = "auto") -> SamLabelConfig:
    """Find the image, the output control and the prompt controls of a config.

    Args:
        config: The labeling config XML, as Label Studio sends it.
        output: ``"brush"`` / ``"polygon"`` to force the output control type,
            ``"auto"`` to prefer BrushLabels and fall back to PolygonLabels.

    Raises:
        InvalidInput: The XML does not parse, or a needed tag is missing; the
            message names the tag to add.
    """
    interface = _load_interface(config)
    image_name, image_key = _find_image(interface)
    controls = _supported_controls_on(interface, image_name)
    return SamLabelConfig(
        image_name=image_name,
        image_key=image_key,
        output=_pick_output(controls, output, image_name),
        prompts=tuple(c for c in controls if converter_for(c.tag).gives_prompt),
    )


def require_prompt_controls(config: SamLabelConfig) -> None:
    """Raise unless the config can carry an interactive prompt.

    Raises:
        InvalidInput: No prompt control (KeyPointLabels, RectangleLabels nor TextArea) on the image.
    """
    if not config.prompts:
        hints = [converter.prompt_hint for converter in CONVERTERS if converter.gives_prompt]
        raise InvalidInput(
            f'the labeling config has no prompt tag on "{config.image_name}": add '
            + ", ".join(hints[:-1])
            + " and/or "
            + hints[-1]
            + f' with toName="{config.image_name}"'
        )
