"""Concept prompts (a word on SAM 3) as plain data: the state, the toolbar rules, the status lines, the overlay.

No widgets and no model: the widget's handlers are tested in
``test_sam_widget_concepts.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from widget import feedback
from widget.drawing import (
    INSTANCE_OUTLINE,
    INSTANCE_PALETTE,
    PICKED_OUTLINE,
    UNPICKED_FILL,
    CanvasGrid,
    instance_color,
    instance_tags,
    label_color,
    mask_layers,
    overlay_png,
    tag_size,
)
from widget.state import (
    CONCEPT_SCORE,
    AcceptedMask,
    Box,
    ObjectEditor,
    ObjectState,
    Point,
)


def instances(
    scores: tuple[float, ...] = (0.91, 0.72, 0.55), size: tuple[int, int] = (20, 30)
) -> list[ObjectMasks]:
    """One :class:`ObjectMasks` per instance, as the server answers a concept: 1 mask, a box, the text."""
    height, width = size
    out = []
    for i, score in enumerate(scores):
        mask = np.zeros((1, height, width), dtype=bool)
        mask[0, 2 : 2 + 4, 2 + 6 * i : 6 + 6 * i] = True
        out.append(
            ObjectMasks(
                masks=mask,
                scores=np.asarray([score], dtype=np.float32),
                stability_scores=np.asarray([1.0], dtype=np.float32),
                labels=["cat"],
                box=np.asarray([2 + 6 * i, 2, 6 + 6 * i, 6], dtype=np.float32),
            )
        )
    return out


def found(scores: tuple[float, ...] = (0.91, 0.72, 0.55), **kwargs: object) -> ObjectState:
    return ObjectState.concept("cat", threshold=0.5, **kwargs).with_instances(instances(scores))  # type: ignore[arg-type]


def test_a_concept_prompt_sends_the_word_the_threshold_and_the_box_as_an_example() -> None:
    assert ObjectState.concept("cat", threshold=0.35).prompt(refine_from=None).fields() == {
        "text": "cat",
        "threshold": 0.35,
        "multimask": True,
    }
    fields = ObjectState.concept("cat", threshold=0.5, box=Box(1, 2, 30, 40)).prompt(refine_from="L").fields()
    assert fields["exemplars"] == [{"box": [1.0, 2.0, 30.0, 40.0], "positive": True}]
    assert not {"points", "labels", "box", "mask_input"} & set(fields)
    assert (
        ObjectState(text="cat").prompt(refine_from=None).fields().get("threshold") is None
    )  # CLIP: no threshold


def test_every_instance_becomes_its_own_candidate_best_first_none_picked() -> None:
    state = found()
    assert state.is_concept and state.has_prompt and state.chosen is None and state.picked == frozenset()
    assert [c.raw_score for c in state.instances] == pytest.approx([0.91, 0.72, 0.55])
    assert all(c.raw_score_name == CONCEPT_SCORE and c.mask.shape == (20, 30) for c in state.instances)
    assert state.instances[1].box == (8.0, 2.0, 12.0, 6.0)
    assert ObjectState(points=(Point(1, 1),)).instances == ()


def test_pick_toggle_and_keep_instances_without_undo_steps() -> None:
    editor = ObjectEditor()
    editor.push(found())
    assert editor.toggle(2).picked == {2}
    assert editor.toggle(0).picked == {0, 2}
    assert editor.toggle(2).picked == {0}
    assert len(editor.history) == 2  # picking is not an undo step
    with pytest.raises(InvalidInput, match="instance 4 does not exist: the answer has 3 instance"):
        editor.pick([0, 3])
    with pytest.raises(InvalidInput, match="pick them with toggle"):
        editor.select(1)
    left = editor.current.without([0])
    assert [c.raw_score for c in left.instances] == pytest.approx([0.72, 0.55]) and left.picked == frozenset()
    editor.restart(left)
    assert not editor.can_undo and editor.current is left
    editor.reset()
    with pytest.raises(InvalidInput, match="no instances to pick"):
        editor.pick([0])


def test_a_kept_instance_keeps_its_label_and_its_raw_sam3_score() -> None:
    record = AcceptedMask.from_candidate(found().instances[1], "cat")
    assert record.label == "cat" and record.score == pytest.approx(0.72)
    assert record.raw_scores == {CONCEPT_SCORE: pytest.approx(0.72)} and record.predicted_iou is None


def test_controls_of_a_concept_list_the_instances_and_offer_accept_all() -> None:
    state = found()
    controls = feedback.controls_for(state, can_undo=True, busy=False, kept=0, concepts=True)
    assert controls.candidates == () and controls.selected is None  # no ranked candidates
    assert controls.instances == ("1: 0.91", "2: 0.72", "3: 0.55")
    assert "SAM 3 score 0.720" in controls.instance_tooltips[1] and "key 2" in controls.instance_tooltips[1]
    assert controls.accept is False and controls.accept_all is True and controls.concepts is True
    picked = feedback.controls_for(
        ObjectEditor([state]).toggle(1), can_undo=True, busy=False, kept=0, concepts=True
    )
    assert picked.accept is True and picked.picked == {1}
    busy = feedback.controls_for(ObjectEditor([state]).toggle(1), can_undo=True, busy=True, kept=0)
    assert not (busy.accept or busy.accept_all or busy.prompts) and busy.instances  # shown, disabled
    assert feedback.controls_for(ObjectState(), can_undo=False, busy=False, kept=0).concepts is False


def test_status_lines_of_a_concept() -> None:
    state = found()
    assert feedback.instances_found(state, 812.3).text == (
        '3 instances of "cat" (threshold 0.5) in 812 ms · press their buttons (keys 1-9) to pick '
        "the ones to keep, then accept; or accept all"
    )
    one = feedback.instances_found(found((0.6,)), 10).text
    assert one.startswith('1 instance of "cat" (threshold 0.5)')
    none = feedback.instances_found(ObjectState.concept("cat", threshold=0.5).with_instances([]), 640)
    assert none.text == (
        'no instance of "cat" scored above the threshold 0.5 (in 640 ms) · lower the threshold '
        "(the slider, or w.threshold = 0.3) and press find again"
    )
    low = feedback.instances_found(ObjectState.concept("cat", threshold=0.2).with_instances([]), 1).text
    assert "w.threshold = 0.1)" in low
    busy = feedback.busy(ObjectState.concept("cat", threshold=0.35000000000000003), 2.04)
    assert busy.kind == "busy" and busy.text == 'finding every instance of "cat" (threshold 0.35)… 2.0 s'
    assert feedback.showing(state) == (
        "3 instances, none picked: press their buttons (keys 1-9) to pick them, or accept all"
    )
    assert (
        feedback.picked(ObjectEditor([state]).pick([2, 0])).text
        == "3 instances, 2 picked (1, 3): accept keeps them"
    )
    records = [AcceptedMask.from_candidate(c, "cat") for c in state.instances[:2]]
    assert feedback.kept_instances(records, 5, 1).text == (
        'kept 2 instances as "cat" · kept: 5 masks · 1 instance left: pick more, or accept all'
    )
    assert feedback.kept_instances(records[:1], 1, 0).text == (
        'kept 1 instance as "cat" · kept: 1 mask · click on the next object, or type a word'
    )
    assert feedback.threshold_changed(0.3).text == "threshold 0.3: press find to ask again with it"


def test_instances_are_drawn_each_in_its_own_colour_the_picked_ones_stronger() -> None:
    state = ObjectEditor([found()]).toggle(1)
    grid = CanvasGrid.build(scale=1.0, canvas_size=(30, 20), image_size=(30, 20))
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    kept = [AcceptedMask(np.zeros((20, 30), dtype=bool), "a")]
    layers, color = mask_layers(
        grid,
        pixels,
        masks=kept,
        labels=["a"],
        chosen=state.chosen,
        palette=[(1, 2, 3)],
        instances=state.instances,
        picked=state.picked,
    )
    assert color is None
    assert [layer.color for layer in layers] == [
        label_color(0),
        instance_color(2),
        instance_color(0),
        instance_color(1),
    ]
    assert [(layer.outline, layer.fill) for layer in layers[1:]] == [
        (INSTANCE_OUTLINE, UNPICKED_FILL),
        (INSTANCE_OUTLINE, UNPICKED_FILL),
        (PICKED_OUTLINE, 1.0),
    ]
    assert len(set(INSTANCE_PALETTE)) == len(INSTANCE_PALETTE) >= 10
    assert instance_color(len(INSTANCE_PALETTE)) == instance_color(0)
    rgba = np.asarray(Image.open(io.BytesIO(overlay_png(grid, layers=layers, opacity=0.6))).convert("RGBA"))
    for i in range(3):
        inside = rgba[2:6, 2 + 6 * i : 6 + 6 * i]
        assert np.all(inside[..., :3] == instance_color(i))
    # the unpicked instance 1: thin outline, lighter fill; the picked instance 2: solid through (3 px outline)
    assert rgba[4, 4, 3] == round(255 * 0.6 * UNPICKED_FILL) and rgba[2, 2, 3] == 255
    assert np.all(rgba[2:6, 8:12, 3] == 255)


def test_instance_tags_name_the_number_and_score_at_the_box_corner_inside_the_canvas() -> None:
    state = ObjectEditor([found()]).toggle(0)
    tags = instance_tags(state.instances, picked=state.picked, scale=2.0, canvas_size=(200, 100))
    assert [t.text for t in tags] == ["1 · 0.91", "2 · 0.72", "3 · 0.55"]
    assert [t.picked for t in tags] == [True, False, False]
    assert (tags[0].x, tags[0].y) == (4.0, 4.0)  # box corner (2, 2) at scale 2
    for tag in tags:
        width, height = tag_size(tag.text)
        assert 0 <= tag.x <= 200 - width and 0 <= tag.y <= 100 - height
        assert tag.color == instance_color(tags.index(tag))
    corner = instance_tags(state.instances[:1], picked=(), scale=10.0, canvas_size=(80, 60))[0]
    assert corner.x == 80 - tag_size(corner.text)[0] and corner.y == 20.0  # pushed back inside on the right


def test_tags_of_instances_whose_corners_meet_are_stacked_so_none_is_hidden() -> None:
    answers = instances((0.9, 0.8, 0.7, 0.6))
    for answer in answers:
        answer.box = np.asarray([4, 4, 10, 10], dtype=np.float32)  # every box has the same corner
    state = ObjectState.concept("cat", threshold=0.5).with_instances(answers)
    tags = instance_tags(state.instances, picked=(), scale=1.0, canvas_size=(200, 100))
    step = tag_size(tags[0].text)[1] + 1
    assert [(t.x, t.y) for t in tags] == [(4.0, 4.0 + k * step) for k in range(4)]
    for answer in answers:
        answer.box = np.asarray([4, 95, 10, 99], dtype=np.float32)  # at the bottom: the next ones go up
    state = ObjectState.concept("cat", threshold=0.5).with_instances(answers[:2])
    bottom = instance_tags(state.instances, picked=(), scale=1.0, canvas_size=(200, 100))
    assert [t.y for t in bottom] == [100 - step + 1, 100 - 2 * step + 1]
