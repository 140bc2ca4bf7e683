"""ObjectState / ObjectEditor: prompts, answers, candidate choice and undo history."""

from __future__ import annotations

import numpy as np
import pytest

from backend.client.base import ObjectMasks
from backend.errors import InvalidInput
from widget.state import Box, ObjectEditor, ObjectState, Point


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


def test_predict_kwargs_carry_points_labels_box_text_and_refinement() -> None:
    state = ObjectState(points=(Point(1, 2), Point(3, 4, False)), box=Box(0, 0, 5, 5), text="cat")
    kwargs = state.predict_kwargs(refine_from="L0")
    assert kwargs == {
        "multimask": True,
        "mask_input": "L0",
        "points": [[1, 2], [3, 4]],
        "labels": [1, 0],
        "box": [0, 0, 5, 5],
        "text": "cat",
    }
    assert "points" not in ObjectState(box=Box(0, 0, 1, 1)).predict_kwargs(refine_from=None)


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
