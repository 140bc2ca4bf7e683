"""ObjectState / ObjectEditor: prompts, answers, candidate choice and undo history."""

from __future__ import annotations

import numpy as np
import pytest

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from widget.state import (
    PREDICTED_IOU,
    TEXT_SIMILARITY,
    AcceptedMask,
    Box,
    ObjectEditor,
    ObjectState,
    Point,
    check_inside,
)


def answer(k: int = 3) -> ObjectMasks:
    masks = np.zeros((k, 4, 5), dtype=bool)
    for i in range(k):
        masks[i, : i + 1] = True
    return ObjectMasks(
        masks=masks,
        scores=np.linspace(0.9, 0.5, k, dtype=np.float32),
        stability_scores=np.full(k, 0.8, dtype=np.float32),
        logits_id="L1",
    )


def test_box_from_corners_orders_them() -> None:
    assert Box.from_corners(5, 1, 2, 7) == Box(2, 1, 5, 7)


def test_the_prompt_carries_points_labels_box_text_and_refinement() -> None:
    state = ObjectState(points=(Point(1, 2), Point(3, 4, False)), box=Box(0, 0, 5, 5), text="cat")
    prompt = state.prompt(refine_from="L0")
    assert prompt.fields() == {
        "multimask": True,
        "mask_input": "L0",
        "points": [[1, 2], [3, 4]],
        "labels": [1, 0],
        "box": [0, 0, 5, 5],
        "text": "cat",
    }
    assert "points" not in ObjectState(box=Box(0, 0, 1, 1)).prompt(refine_from=None).fields()


def test_with_answer_keeps_ranked_candidates_and_selects_best() -> None:
    state = ObjectState(points=(Point(1, 1),), selected=2).with_answer(answer())
    assert [c.score for c in state.candidates] == pytest.approx([0.9, 0.7, 0.5])
    assert state.selected == 0 and state.logits_id == "L1"
    assert state.chosen is state.candidates[0]
    assert state.candidates[2].area == 15


def test_editor_select_undo_reset() -> None:
    editor = ObjectEditor()
    assert not editor.undo()
    editor.push(ObjectState(points=(Point(1, 1),)).with_answer(answer()))
    editor.select(1)
    assert editor.current.selected == 1 and len(editor.history) == 2
    with pytest.raises(InvalidInput, match="candidate 4 does not exist"):
        editor.select(3)
    assert editor.undo() and editor.current == editor.history[0] and not editor.current.has_prompt
    editor.push(ObjectState(text="dog"))
    editor.reset()
    assert len(editor.history) == 1 and editor.current.chosen is None


def test_shown_score_is_a_probability_and_the_raw_predicted_iou_is_kept() -> None:
    raw = answer()
    raw.scores = np.asarray([1.06, 0.7, -0.02], dtype=np.float32)
    state = ObjectState(points=(Point(1, 1),)).with_answer(raw)
    assert [c.score for c in state.candidates] == pytest.approx([1.0, 0.7, 0.0])
    assert [c.raw_score for c in state.candidates] == pytest.approx([1.06, 0.7, -0.02])
    assert {c.raw_score_name for c in state.candidates} == {PREDICTED_IOU}
    kept = AcceptedMask.from_candidate(state.candidates[0], "cat")
    assert kept.score == 1.0 and kept.predicted_iou == pytest.approx(1.06)
    assert kept.as_dict()["predicted_iou"] == pytest.approx(1.06)


def test_text_answers_carry_their_similarity_under_its_own_name() -> None:
    state = ObjectState(text="cat").with_answer(answer())
    assert {c.raw_score_name for c in state.candidates} == {TEXT_SIMILARITY}
    kept = AcceptedMask.from_candidate(state.candidates[1], "cat")
    assert kept.predicted_iou is None and kept.raw_scores == {TEXT_SIMILARITY: pytest.approx(0.7)}


def test_accepted_mask_scores_are_clipped_into_zero_one() -> None:
    assert AcceptedMask(np.ones((2, 2), bool), "a", 1.3).score == 1.0
    assert AcceptedMask(np.ones((2, 2), bool), "a").score == 1.0
    assert AcceptedMask(np.ones((2, 2), bool), "a", float("nan")).score == 0.0


def test_can_undo_follows_the_history() -> None:
    editor = ObjectEditor()
    assert not editor.can_undo
    editor.push(ObjectState(points=(Point(1, 1),)))
    assert editor.can_undo
    editor.reset()
    assert not editor.can_undo


def test_check_inside_names_the_image_size() -> None:
    check_inside(0, 5, (5, 5))
    with pytest.raises(InvalidInput, match="outside the 5x4 image"):
        check_inside(6, 1, (5, 4))
