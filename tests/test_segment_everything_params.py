"""Segment-everything parameters have one definition: the HTTP schema, ``sam-annotate`` and the generator agree."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.annotate.cli import build_parser
from backend.api.errors import InvalidInput
from backend.api.segment_everything import (
    META_THRESHOLDS,
    MODEL_DEFAULT_NAMES,
    PARAM_NAMES,
    SegmentEverythingParams,
    generator_defaults,
    param_range,
)
from backend.inference.automask import AutomaskGenerator
from backend.serving.request_body import parse_request
from backend.serving.schemas import AutomaskParams, AutomaskRequest

ROOT = Path(__file__).resolve().parents[1]
OUT_OF_RANGE = [
    ("pred_iou_thresh", 2, "must be in [0, 1], got 2"),
    ("points_per_side", 0, "must be in [1, 128], got 0"),
    ("points_per_side", 129, "must be in [1, 128], got 129"),
    ("stability_score_offset", 0, "must be in (0, 100], got 0"),
    ("crop_overlap_ratio", 1, "must be in [0, 1), got 1"),
    ("crop_n_layers", 4, "must be in [0, 3], got 4"),
    ("min_mask_region_area", -1, "must be >= 0, got -1"),
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _cli_error(capsys: pytest.CaptureFixture[str], name: str, value: object) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["images", "--everything", _flag(name), str(value)])
    return capsys.readouterr().err


def test_schema_cli_and_generator_have_the_definitions_defaults_and_ranges(capsys):
    schema_fields = AutomaskParams.model_fields
    actions = {action.dest: action for action in build_parser()._actions}
    generator = inspect.signature(AutomaskGenerator).parameters
    assert set(PARAM_NAMES) <= set(schema_fields) and set(PARAM_NAMES) <= set(actions)
    for name in PARAM_NAMES:
        field = SegmentEverythingParams.model_fields[name]
        schema = schema_fields[name]
        assert (schema.default, schema.metadata, schema.description) == (
            field.default,
            field.metadata,
            field.description,
        ), name
        help_text = " ".join(str(actions[name].help).split())
        assert actions[name].default is None, name  # only the flags given override the model's thresholds
        if name in MODEL_DEFAULT_NAMES:
            assert field.default is None and f"Meta's {META_THRESHOLDS[name]}" in help_text, help_text
            assert generator[name].default == META_THRESHOLDS[name]
        else:
            assert f"(default: {field.default})" in help_text, help_text
            assert generator[name].default == field.default, name
        bounds = param_range(name)
        lowest = bounds.ge if bounds.ge is not None else bounds.gt
        assert lowest is not None, name  # every parameter has a lower bound
        if bounds.ge is not None:
            parsed = build_parser().parse_args(["images", "--everything", _flag(name), str(lowest)])
            assert getattr(parsed, name) == lowest
        below = lowest - 1 if bounds.kind is int or bounds.gt is None else lowest
        assert f"must be {bounds.describe()}" in _cli_error(capsys, name, below), name
    assert {name: generator[name].default for name in PARAM_NAMES} == generator_defaults()


@pytest.mark.parametrize(("name", "value", "message"), OUT_OF_RANGE)
def test_out_of_range_gets_one_message_over_http_and_on_the_command_line(capsys, name, value, message):
    body = json.dumps({"image_id": "any", name: value}).encode()
    with pytest.raises(InvalidInput) as http:  # what POST /v1/automask answers with 400
        parse_request(body, AutomaskRequest)
    assert str(http.value) == f"invalid request: {name}: {message}"
    err = _cli_error(capsys, name, value)
    assert f"argument {_flag(name)}: {message}" in err, err


def test_changing_only_the_definition_changes_schema_cli_and_generator():
    """Run in a fresh interpreter whose definition says 24 points a side at most 100."""
    script = textwrap.dedent(
        """
        import inspect, json, sys, types
        from pathlib import Path

        import backend.api

        path = Path("backend/api/segment_everything.py")
        source = path.read_text()
        assert source.count("default=32,") == 1 and source.count("le=128,") == 1
        source = source.replace("default=32,", "default=24,").replace("le=128,", "le=100,")
        module = types.ModuleType("backend.api.segment_everything")
        module.__file__ = str(path)
        sys.modules[module.__name__] = module
        backend.api.segment_everything = module
        exec(compile(source, str(path), "exec"), module.__dict__)

        from backend.annotate.cli import build_parser
        from backend.inference.automask import AutomaskGenerator
        from backend.serving.schemas import AutomaskRequest

        schema = AutomaskRequest.model_json_schema()["properties"]["points_per_side"]
        action = next(a for a in build_parser()._actions if a.dest == "points_per_side")
        try:
            action.type("101")
            refused = None
        except Exception as error:
            refused = str(error)
        print(json.dumps({
            "schema": [schema["default"], schema["maximum"]],
            "cli_help": action.help,
            "cli_refuses": refused,
            "generator": inspect.signature(AutomaskGenerator).parameters["points_per_side"].default,
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["schema"] == [24, 100]
    assert "(default: 24)" in seen["cli_help"]
    assert seen["cli_refuses"] == "must be in [1, 100], got 101"
    assert seen["generator"] == 24
    # and this interpreter's definition is the one every consumer shows
    assert AutomaskRequest.model_json_schema()["properties"]["points_per_side"]["maximum"] == 128
