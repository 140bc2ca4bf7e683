"""Parsing of labeling configs: which tags the plugin finds, and clear errors."""

from __future__ import annotations

import pytest

from backend.api.errors import InvalidInput
from sam_plugin.label_config import EXAMPLE_CONFIG, parse_label_config, require_prompt_controls


def test_example_config_finds_image_output_and_prompts() -> None:
    config = parse_label_config(EXAMPLE_CONFIG)
    assert (config.image_name, config.image_key) == ("image", "image")
    assert config.output.tag == "BrushLabels" and config.output_kind == "brush"
    assert [c.name for c in config.keypoints] == ["click"]
    assert [c.name for c in config.rectangles] == ["box"]
    assert config.keypoints[0].labels == ("Object", "Background")


def test_polygon_config_uses_polygon_output() -> None:
    config = parse_label_config(
        '<View><Image name="img" value="$photo"/>'
        '<PolygonLabels name="poly" toName="img"><Label value="Car"/></PolygonLabels>'
        '<KeyPointLabels name="kp" toName="img"><Label value="Car"/></KeyPointLabels></View>'
    )
    assert config.output_kind == "polygon" and config.image_key == "photo"


def test_aliases_are_read() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels>'
        '<KeyPointLabels name="k" toName="i"><Label value="A+" alias="1"/><Label value="A-" alias="-1"/>'
        "</KeyPointLabels></View>"
    )
    assert config.keypoints[0].aliases == {"A+": "1", "A-": "-1"}


@pytest.mark.parametrize(
    ("xml", "needle"),
    [
        ("", "empty"),
        ("<View><Image name='i' value='$x'/>", "not valid XML"),
        ('<View><BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>', "<Image>"),
        (
            '<View><Image name="i" value="$x"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
            "<BrushLabels> or <PolygonLabels>",
        ),
    ],
)
def test_unusable_configs_raise_a_message_naming_the_fix(xml: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle.replace("(", r"\(")):
        parse_label_config(xml)


def test_forced_polygon_output_rejects_brush_only_config() -> None:
    with pytest.raises(InvalidInput, match="PolygonLabels"):
        parse_label_config(EXAMPLE_CONFIG, output="polygon")


def test_config_without_prompt_tags_is_rejected_for_interactive_use() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>'
    )
    with pytest.raises(InvalidInput, match="KeyPointLabels"):
        require_prompt_controls(config)


def test_prompt_controls_come_from_the_registry_and_other_tags_are_ignored() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$image"/>'
        '<TextArea name="t" toName="i"/>'
        '<Choices name="c" toName="i"><Choice value="a"/></Choices>'
        '<PolygonLabels name="p" toName="i"><Label value="A"/></PolygonLabels>'
        '<KeyPointLabels name="k" toName="i"><Label value="A"/></KeyPointLabels>'
        '<RectangleLabels name="r" toName="other"><Label value="A"/></RectangleLabels></View>'
    )
    assert [(c.name, c.tag) for c in config.prompts] == [("t", "TextArea"), ("k", "KeyPointLabels")]
    assert set(config.prompt_controls) == {"t", "k"}
    assert [c.name for c in config.text_areas] == ["t"] and config.rectangles == ()
    assert config.output.name == "p" and config.output_converter.tag == "PolygonLabels"


def test_auto_output_prefers_brush_wherever_it_is() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$image"/>'
        '<PolygonLabels name="p" toName="i"><Label value="A"/></PolygonLabels>'
        '<BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>'
    )
    assert config.output.name == "b" and config.output_kind == "brush"
    assert (
        parse_label_config(
            '<View><Image name="i" value="$image"/>'
            '<PolygonLabels name="p" toName="i"><Label value="A"/></PolygonLabels>'
            '<BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>',
            output="polygon",
        ).output.name
        == "p"
    )


def test_missing_prompt_tags_message_names_every_prompt_tag() -> None:
    config = parse_label_config(
        '<View><Image name="i" value="$image"/><BrushLabels name="b" toName="i"><Label value="A"/></BrushLabels></View>'
    )
    with pytest.raises(InvalidInput) as raised:
        require_prompt_controls(config)
    assert raised.value.detail == (
        'the labeling config has no prompt tag on "i": add <KeyPointLabels smart="true"> (clicks), '
        '<RectangleLabels smart="true"> (boxes) and/or <TextArea> (text prompt) with toName="i"'
    )
