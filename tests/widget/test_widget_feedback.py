"""Status line and toolbar rules as pure functions of the editor state (no widgets, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.answers import ObjectMasks
from backend.api.errors import SamServerError
from widget import feedback
from widget.events import GESTURES
from widget.state import AcceptedMask, Box, ObjectState, Point
from widget.toolbar import legend_html, status_html


def answered_state(scores: tuple[float, ...] = (1.06, 0.81, 0.4), **prompts: object) -> ObjectState:
    masks = np.zeros((len(scores), 4, 5), dtype=bool)
    for i in range(len(scores)):
        masks[i, : i + 1] = True
    answer = ObjectMasks(
        masks=masks,
        scores=np.asarray(scores, dtype=np.float32),
        stability_scores=np.full(len(scores), 0.9, dtype=np.float32),
        logits_id="L",
    )
    prompts.setdefault("points", (Point(1, 1),))
    return ObjectState(**prompts).with_answer(answer)  # type: ignore[arg-type]


def test_controls_before_any_prompt_offer_nothing_to_accept_undo_or_clear() -> None:
    controls = feedback.controls_for(ObjectState(), can_undo=False, busy=False, kept=0)
    assert controls.candidates == () and controls.selected is None
    assert (controls.accept, controls.undo, controls.clear, controls.prompts) == (False, False, False, True)


def test_controls_of_an_answer_show_probabilities_and_keep_the_raw_iou_in_the_tooltip() -> None:
    state = answered_state()
    controls = feedback.controls_for(state, can_undo=True, busy=False, kept=2)
    assert controls.candidates == (("1: 1.00", 0), ("2: 0.81", 1), ("3: 0.40", 2))
    assert controls.selected == 0 and controls.kept == 2
    assert "predicted IoU 1.060" in controls.tooltips[0] and "key 1" in controls.tooltips[0]
    assert (controls.accept, controls.undo, controls.clear) == (True, True, True)


def test_every_control_is_off_while_a_request_runs() -> None:
    controls = feedback.controls_for(answered_state(), can_undo=True, busy=True, kept=0)
    assert not any([controls.accept, controls.undo, controls.clear, controls.prompts])
    assert controls.candidates  # still shown, only disabled


def test_status_after_an_answer_names_the_latency_and_a_score_in_zero_one() -> None:
    status = feedback.answered(answered_state(), 123.4)
    assert status.kind == "info"
    assert status.text == "3 masks in 123 ms · showing 1 of 3: score 1.00"
    text = feedback.answered(answered_state(text="a red car"), 9000).text
    assert text.startswith('3 masks for "a red car" in 9000 ms')


def test_status_after_undo_clear_accept_and_load_describes_the_new_state() -> None:
    assert feedback.undone(answered_state()).text == "undone · showing 1 of 3: score 1.00"
    assert "click on an object" in feedback.undone(ObjectState()).text
    assert feedback.nothing_to_undo(ObjectState()).text.startswith("nothing to undo")
    assert feedback.cleared().text == "cleared · click on an object"
    kept = AcceptedMask(np.ones((2, 2), bool), "cat", 0.93)
    assert (
        feedback.accepted(kept, 3).text
        == 'kept "cat" (score 0.93) · kept: 3 masks · click on the next object'
    )
    assert feedback.loaded(1, 1).text == "loaded 1 mask · kept: 1 mask"


def test_busy_status_says_what_runs_and_for_how_long() -> None:
    clicks = feedback.busy(answered_state(), None)
    assert (clicks.text, clicks.kind, clicks.progress) == ("segmenting…", "busy", 0.0)
    assert feedback.busy(answered_state(), 1.25).text == "segmenting… 1.2 s"
    text = feedback.busy(ObjectState(text="a dog"), 3.0)
    assert text.text.startswith('finding "a dog"… 3.0 s') and "10-20 s" in text.text
    assert feedback.embedding_progress(2.5, pending=True).text.endswith("sent when it is ready")


def test_failures_are_shown_in_full() -> None:
    detail = "point (900, 20) is outside the 640x480 image: " + "use original-image pixels " * 10
    status = feedback.failed(SamServerError(400, "invalid_input", detail))
    assert status.kind == "error" and status.text == f"error: {detail}"
    assert feedback.failed(ConnectionError("refused")).text == "error: ConnectionError: refused"


def test_an_empty_answer_is_worded_for_the_kind_of_prompt() -> None:
    clicks = feedback.no_mask_message(ObjectState(points=(Point(1, 1),)))
    assert "try another click" in clicks
    text = feedback.no_mask_message(ObjectState(text="a red car"))
    assert 'no object matches "a red car"' in text and "click" not in text
    assert "passed its filters" in text and "pred_iou_thresh=0.6, stability_score_thresh=0.8" in text
    demo = {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.75}  # the demo model's: go below them
    lowered = feedback.no_mask_message(ObjectState(text="a red car"), demo)
    assert "pred_iou_thresh=0.5, stability_score_thresh=0.6" in lowered
    on_a_model = feedback.no_mask_message(ObjectState(text="a red car"), demo, model="sam2.1_hiera_t")
    assert "w.client.automask(w.image_id, model='sam2.1_hiera_t', pred_iou_thresh=0.5" in on_a_model
    boxed = feedback.no_mask_message(ObjectState(text="car", box=Box(0, 0, 5, 5), points=(Point(1, 1),)))
    assert "inside the box and that agrees with the clicks" in boxed and "Esc" in boxed


def test_status_html_wraps_escapes_and_marks_the_kind() -> None:
    long = "error: " + "x" * 500 + " <b>"
    rendered = status_html(feedback.Status(long, "error"))
    assert "white-space: pre-wrap" in rendered and "overflow-wrap: anywhere" in rendered
    assert "x" * 500 + " &lt;b&gt;" in rendered and "sam-status-error" in rendered
    assert "fa-spin" in status_html(feedback.Status("segmenting…", "busy"))
    assert "fa-spin" not in rendered


@pytest.mark.parametrize(
    "gesture",
    ["left click", "right click", "Shift+click", "drag", "1 / 2 / 3", "Ctrl+Z", "Esc", "Enter"],
)
def test_the_legend_lists_every_gesture(gesture: str) -> None:
    assert gesture in legend_html()
    assert any(gesture in name for name, _ in GESTURES)
