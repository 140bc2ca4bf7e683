"""Which tags of a Label Studio labeling config the SAM plugin uses.

Parsed with ``label_studio_sdk.label_interface.LabelInterface``. A config the
plugin can work with has one ``Image`` and an output control (``BrushLabels``
or ``PolygonLabels``) pointing at it; the prompts come from ``KeyPointLabels``
(clicks), ``RectangleLabels`` (boxes) and ``TextArea`` (text) controls on the
same image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.api.errors import InvalidInput
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

_OUTPUT_TAGS = {"brush": "BrushLabels", "polygon": "PolygonLabels"}


@dataclass(frozen=True)
class ControlInfo:
    """One control tag of the config.

    Attributes:
        name: The control's ``name`` (the ``from_name`` of its results).
        tag: Tag type, e.g. ``"KeyPointLabels"``.
        labels: Label values in config order.
        aliases: Label value -> its ``alias`` attribute, for labels that have one.
    """

    name: str
    tag: str
    labels: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SamLabelConfig:
    """The parts of a labeling config the plugin needs.

    Attributes:
        image_name: ``name`` of the ``Image`` tag (the ``to_name`` of results).
        image_key: Task data key holding the image URL (``value="$image"`` -> ``image``).
        output: The control that receives the masks (BrushLabels or PolygonLabels).
        keypoints: KeyPointLabels controls on the image (click prompts).
        rectangles: RectangleLabels controls on the image (box prompts).
        text_areas: TextArea controls on the image (text prompts).
    """

    image_name: str
    image_key: str
    output: ControlInfo
    keypoints: tuple[ControlInfo, ...] = ()
    rectangles: tuple[ControlInfo, ...] = ()
    text_areas: tuple[ControlInfo, ...] = ()

    @property
    def output_kind(self) -> str:
        """``"brush"`` or ``"polygon"``."""
        return "brush" if self.output.tag == "BrushLabels" else "polygon"

    @property
    def prompt_controls(self) -> dict[str, ControlInfo]:
        """Control name -> info, for every prompt control."""
        return {c.name: c for c in (*self.keypoints, *self.rectangles, *self.text_areas)}


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
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise InvalidInput(
            "the labeling config is empty; paste the SAM labeling config from docs/labelstudio.md"
        )
    try:
        interface = LabelInterface(config)
    except Exception as exc:  # the SDK raises several unrelated types for bad XML
        raise InvalidInput(f"the labeling config is not valid XML: {exc}") from exc

    images = [obj for obj in interface.objects if obj.tag == "Image"]
    if not images:
        raise InvalidInput('the labeling config has no <Image> tag; add <Image name="image" value="$image"/>')
    image = images[0]
    key = (image.value or "").lstrip("$")
    if not key:
        raise InvalidInput(
            f'the <Image name="{image.name}"> tag needs value="$<task field>", e.g. value="$image"'
        )

    def on_image(tag: str) -> list[ControlInfo]:
        return [
            _control_info(c) for c in interface.controls if c.tag == tag and image.name in (c.to_name or [])
        ]

    wanted = ("brush", "polygon") if output == "auto" else (output,)
    outputs = [info for kind in wanted for info in on_image(_OUTPUT_TAGS[kind])]
    if not outputs:
        tags = " or ".join(f"<{_OUTPUT_TAGS[kind]}>" for kind in wanted)
        raise InvalidInput(
            f'the labeling config has no {tags} tag with toName="{image.name}"; '
            "the SAM plugin writes its masks into it (see docs/labelstudio.md)"
        )
    config_out = SamLabelConfig(
        image_name=image.name,
        image_key=key,
        output=outputs[0],
        keypoints=tuple(on_image("KeyPointLabels")),
        rectangles=tuple(on_image("RectangleLabels")),
        text_areas=tuple(on_image("TextArea")),
    )
    return config_out


def require_prompt_controls(config: SamLabelConfig) -> None:
    """Raise unless the config can carry an interactive prompt.

    Raises:
        InvalidInput: No KeyPointLabels, RectangleLabels nor TextArea on the image.
    """
    if not (config.keypoints or config.rectangles or config.text_areas):
        raise InvalidInput(
            f'the labeling config has no prompt tag on "{config.image_name}": add a '
            '<KeyPointLabels smart="true"> (clicks) and/or <RectangleLabels smart="true"> (boxes) '
            'or a <TextArea> (text prompt) with toName="' + config.image_name + '"'
        )
