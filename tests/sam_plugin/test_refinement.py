"""Clicks sent one at a time, as Label Studio's page sends them, refine one object.

The scripted server's mask is a disk of radius 5 around each positive click
minus a disk of radius 3 around each negative click, so the masks show which
clicks the plugin combined.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from backend.api.errors import InvalidInput
from backend.formats.mask_codecs import from_brush_rle
from sam_plugin.label_config import EXAMPLE_CONFIG
from sam_plugin.model import SamLabelStudioModel
from sam_plugin.runtime import PluginRuntime
from tests.sam_plugin.fakes import LS_URL, FakeSession, ScriptedSamClient, png_bytes

W, H = 100, 50


@pytest.fixture(autouse=True)
def _image(fake_session: FakeSession) -> None:
    fake_session.add(f"{LS_URL}/data/upload/2/x.png", png_bytes(W, H, seed=3))


def task(task_id: int = 5, user: str | None = None) -> dict[str, Any]:
    drafts = [{"user": user, "result": []}] if user else []
    return {"id": task_id, "data": {"image": "/data/upload/2/x.png"}, "drafts": drafts}


def keypoint(x: int, y: int, label: str = "Object", positive: bool = True) -> dict[str, Any]:
    """A smart keypoint at pixel (x, y), in Label Studio's percent frame."""
    return {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "is_positive": positive,
        "original_width": W,
        "original_height": H,
        "value": {"x": 100 * x / W, "y": 100 * y / H, "keypointlabels": [label]},
    }


def rectangle(x1: int, y1: int, x2: int, y2: int) -> dict[str, Any]:
    return {
        "type": "rectanglelabels",
        "from_name": "box",
        "to_name": "image",
        "value": {
            "x": 100 * x1 / W,
            "y": 100 * y1 / H,
            "width": 100 * (x2 - x1) / W,
            "height": 100 * (y2 - y1) / H,
            "rectanglelabels": ["Object"],
        },
    }


def ask(runtime: PluginRuntime, region: dict[str, Any], the_task: dict[str, Any] | None = None) -> dict:
    """One interactive request carrying a single region, as the labeling page sends it."""
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    [answer] = model.predict([the_task or task()], context={"result": [region]})
    [brush] = answer["result"]
    return brush


def mask_of(brush: dict[str, Any]) -> np.ndarray:
    return from_brush_rle(brush["value"]["rle"], H, W)


def test_background_click_alone_refines_the_last_object(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    first = ask(runtime, keypoint(20, 20))
    refined = ask(runtime, keypoint(24, 20, label="Background"))
    assert mask_of(first)[20, 24] and not mask_of(refined)[20, 24]
    assert mask_of(refined)[20, 16]
    last = sam_client.calls[-1]
    assert last["points"] == [[20.0, 20.0], [24.0, 20.0]] and last["labels"] == [1, 0]
    assert last["mask_input"] == "logits-1-0"
    assert refined["id"] == first["id"]


def test_alt_click_is_a_background_click(runtime: PluginRuntime, sam_client: ScriptedSamClient) -> None:
    ask(runtime, keypoint(20, 20))
    ask(runtime, keypoint(23, 20, positive=False))
    assert sam_client.calls[-1]["labels"] == [1, 0]


def test_background_click_refines_a_box(runtime: PluginRuntime, sam_client: ScriptedSamClient) -> None:
    ask(runtime, rectangle(10, 10, 40, 40))
    refined = mask_of(ask(runtime, keypoint(20, 20, label="Background")))
    assert sam_client.calls[-1]["box"] == [10.0, 10.0, 40.0, 40.0]
    assert not refined[20, 20] and refined[30, 30]


def test_positive_click_on_another_object_starts_a_new_object(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    first = ask(runtime, keypoint(20, 20))
    second = ask(runtime, keypoint(70, 30))
    assert sam_client.calls[-1]["points"] == [[70.0, 30.0]] and sam_client.calls[-1]["mask_input"] is None
    assert mask_of(second)[30, 70] and not mask_of(second)[20, 20]
    assert second["id"] != first["id"]
    ask(runtime, keypoint(72, 30, label="Background"))
    assert sam_client.calls[-1]["points"] == [[70.0, 30.0], [72.0, 30.0]]


def test_positive_click_whose_mask_overlaps_extends_the_object(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    ask(runtime, keypoint(20, 20))
    grown = mask_of(ask(runtime, keypoint(27, 20)))  # outside the first disk, its own disk overlaps it
    assert sam_client.calls[-1]["points"] == [[20.0, 20.0], [27.0, 20.0]]
    assert grown[20, 15] and grown[20, 31]


def test_background_click_without_an_object_says_what_to_do(runtime: PluginRuntime) -> None:
    with pytest.raises(InvalidInput, match="click the object with a positive label or draw a box first"):
        ask(runtime, keypoint(20, 20, label="Background"))


def test_sessions_are_kept_apart_per_task(runtime: PluginRuntime, sam_client: ScriptedSamClient) -> None:
    ask(runtime, keypoint(20, 20), task(5))
    with pytest.raises(InvalidInput, match="background click"):
        ask(runtime, keypoint(22, 20, label="Background"), task(6))


def test_a_named_annotator_continues_the_object_of_their_first_click(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    ask(runtime, keypoint(20, 20), task(5))  # no draft yet: Label Studio names nobody
    ask(runtime, keypoint(23, 20, label="Background"), task(5, user="ann@example.com"))
    assert sam_client.calls[-1]["labels"] == [1, 0]
    with pytest.raises(InvalidInput, match="background click"):
        ask(runtime, keypoint(23, 20, label="Background"), task(5, user="bob@example.com"))


def test_every_region_sent_at_once_is_one_complete_prompt(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    ask(runtime, keypoint(70, 30))
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    model.predict([task()], context={"result": [keypoint(20, 20), keypoint(23, 20, label="Background")]})
    assert sam_client.calls[-1]["points"] == [[20.0, 20.0], [23.0, 20.0]]
    assert sam_client.calls[-1]["mask_input"] is None


def test_region_scores_are_probabilities(runtime: PluginRuntime, sam_client: ScriptedSamClient) -> None:
    sam_client.score_offset = 0.2  # predicted IoU 1.1
    brush = ask(runtime, keypoint(20, 20))
    assert brush["score"] == 1.0


def test_when_the_one_mask_ignores_a_background_click_a_candidate_that_respects_it_is_shown(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    sam_client.top_mask_ignores_background = True
    ask(runtime, keypoint(20, 20))
    refined = mask_of(ask(runtime, keypoint(24, 20, label="Background")))
    assert [call["multimask"] for call in sam_client.calls[-2:]] == [False, True]
    assert sam_client.calls[-1]["mask_input"] is None
    assert not refined[20, 24] and refined[20, 20] and refined[20, 16]


def test_the_same_click_again_gives_the_same_answer_without_asking_the_model(
    runtime: PluginRuntime, sam_client: ScriptedSamClient
) -> None:
    first = ask(runtime, keypoint(20, 20))
    calls = len(sam_client.calls)
    again = ask(runtime, keypoint(20, 20))
    assert len(sam_client.calls) == calls
    assert {k: v for k, v in again.items() if k != "id"} == {k: v for k, v in first.items() if k != "id"}


def test_several_boxes_at_once_end_the_object_being_refined(runtime: PluginRuntime) -> None:
    ask(runtime, keypoint(20, 20))
    model = SamLabelStudioModel("2", EXAMPLE_CONFIG, runtime=runtime)
    model.predict([task()], context={"result": [rectangle(5, 5, 30, 30), rectangle(50, 10, 90, 40)]})
    with pytest.raises(InvalidInput, match="background click"):
        ask(runtime, keypoint(22, 20, label="Background"))
