"""The converter registry: one converter per control tag the docs name, clear errors for the others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from label_studio_sdk.label_interface.control_tags import _TAG_TO_CLASS

from backend.api.errors import InvalidInput
from sam_plugin.controls.registry import (
    CONVERTERS,
    converter_for,
    find_converter,
    output_converters,
    prompt_converter_for,
    prompt_tags,
)
from sam_plugin.label_config import EXAMPLE_CONFIG

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "labelstudio.md"


def documented_control_tags() -> set[str]:
    """Label Studio control tags named in the plugin's docs and example config (``<Tag`` or `` `Tag` ``)."""
    text = DOCS.read_text(encoding="utf-8") + EXAMPLE_CONFIG
    names = set(re.findall(r"[<`]([A-Z][A-Za-z]+)", text))
    return {name for name in names if name.lower() in _TAG_TO_CLASS}  # the SDK's list of control tags


def test_the_docs_name_the_five_supported_tags() -> None:
    assert documented_control_tags() == {
        "KeyPointLabels",
        "RectangleLabels",
        "TextArea",
        "BrushLabels",
        "PolygonLabels",
    }


@pytest.mark.parametrize("tag", sorted(documented_control_tags()))
def test_every_documented_control_tag_has_exactly_one_converter(tag: str) -> None:
    assert [type(c).__name__ for c in CONVERTERS if c.matches(tag)] == [f"{tag}Converter"]
    assert converter_for(tag) is find_converter(tag)


def test_every_converter_is_documented_and_writes_its_tag_in_lower_case_as_result_type() -> None:
    documented = documented_control_tags()
    for converter in CONVERTERS:
        assert converter.tag in documented
        assert converter.result_type == converter.tag.lower()
        assert converter.gives_prompt != converter.carries_mask  # each tag plays one role
        assert bool(converter.prompt_hint) == converter.gives_prompt


@pytest.mark.parametrize("tag", ["Choices", "Labels", "Brush"])
def test_an_unsupported_tag_gets_a_message_listing_the_supported_ones(tag: str) -> None:
    assert find_converter(tag) is None
    with pytest.raises(InvalidInput) as raised:
        converter_for(tag)
    message = raised.value.detail
    assert f"does not support the <{tag}> control tag" in message
    assert "<KeyPointLabels>, <RectangleLabels>, <TextArea>" in message
    assert "<BrushLabels> or <PolygonLabels>" in message


def test_prompt_results_go_to_their_converter_and_others_to_none() -> None:
    assert prompt_converter_for({"type": "keypointlabels"}).tag == "KeyPointLabels"  # type: ignore[union-attr]
    assert prompt_converter_for({"type": "textarea"}).tag == "TextArea"  # type: ignore[union-attr]
    assert prompt_converter_for({"type": "brushlabels"}) is None  # a previous mask
    assert prompt_converter_for({"type": "choices"}) is None
    assert prompt_converter_for({}) is None
    assert prompt_tags() == ["KeyPointLabels", "RectangleLabels", "TextArea"]


def test_output_converters_in_order_of_preference() -> None:
    assert [c.tag for c in output_converters()] == ["BrushLabels", "PolygonLabels"]
    assert [c.tag for c in output_converters("polygon")] == ["PolygonLabels"]
    assert [c.tag for c in output_converters("brush")] == ["BrushLabels"]
