"""Request fields take the JSON type they document: no bool as a label, no string as a number.

Python callers may still pass numpy arrays and numpy scalars (what a notebook has).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from backend.api.prompt import Prompt
from backend.api.segment_everything import SegmentEverythingParams
from backend.serving.request_body import parse_request
from backend.serving.schemas import AutomaskRequest, PredictRequest


def test_numpy_arrays_and_scalars_give_the_plain_prompt():
    plain = Prompt.of(points=[[5, 6.5]], labels=[1], box=[1, 2, 30, 40], multimask=False, threshold=0.25)
    from_numpy = Prompt.of(
        points=[[np.int64(5), np.float32(6.5)]],
        labels=np.array([1]),
        box=np.array([1, 2, 30, 40]),
        multimask=np.bool_(False),
        threshold=np.float64(0.25),
    )
    assert from_numpy == plain


@pytest.mark.parametrize(
    "fields, where",
    [
        ({"points": [[5, 5]], "labels": [True]}, "labels.0"),
        ({"points": [[5, 5]], "labels": [1.0]}, "labels.0"),
        ({"points": [["5", 5]], "labels": [1]}, "points.0.0"),
        ({"box": [1, 2, 3, False]}, "box.3"),
        ({"points": [[5, 5]], "labels": [1], "multimask": "no"}, "multimask"),
        ({"points": [[5, 5]], "labels": [1], "multimask": 0}, "multimask"),
        ({"text": "car", "threshold": "0.5"}, "threshold"),
    ],
)
def test_a_wrongly_typed_prompt_field_is_refused_by_name(fields, where):
    body = {"image_id": "a" * 64, **fields}
    with pytest.raises(InvalidInput, match=f"invalid request: {where}"):
        parse_request(_json(body), PredictRequest)


@pytest.mark.parametrize(
    "name, value",
    [
        ("points_per_side", True),
        ("points_per_side", "16"),
        ("points_per_side", 16.0),
        ("box_nms_thresh", "0.5"),
    ],
)
def test_a_wrongly_typed_automask_parameter_is_refused_by_name(name, value):
    with pytest.raises(InvalidInput, match=f"invalid request: {name}"):
        parse_request(_json({"image_id": "a" * 64, name: value}), AutomaskRequest)


def test_numpy_automask_parameters_are_taken_as_numbers():
    params = SegmentEverythingParams(points_per_side=np.int64(8), box_nms_thresh=np.float32(0.5))
    assert params.points_per_side == 8 and type(params.points_per_side) is int
    assert params.box_nms_thresh == 0.5


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


def test_numpy_label_arrays_of_whole_floats_and_numpy_exemplar_values_are_read_as_values():
    assert Prompt.of(points=[[5, 5], [6, 6]], labels=np.ones(2)).labels == [1, 1]
    exemplar = {"box": np.array([1, 2, 30, 40]), "positive": np.bool_(False)}
    [read] = Prompt.of(text="car", exemplars=[exemplar]).exemplars or []
    assert read.box == (1.0, 2.0, 30.0, 40.0) and read.positive is False
    with pytest.raises(InvalidInput, match="labels"):
        Prompt.of(points=[[5, 5]], labels=np.array([0.5]))
