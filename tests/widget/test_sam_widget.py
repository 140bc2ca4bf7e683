"""SamWidget's handlers driven directly, against a real in-process model server."""

from __future__ import annotations

import html
import io
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from backend.formats.coordinates import canvas_to_image
from tests.widget.conftest import DEMO_WEIGHTS, RecordingClient, scene, shown_image_pixels
from widget.drawing import CANDIDATE_OUTLINE, CONTRAST_PALETTE, label_color, outline
from widget.sam_widget import SamWidget


def mouse(w: SamWidget, kind: str, x: float, y: float, *, button: int = 0, shift: bool = False) -> None:
    """Send an ipyevents-shaped mouse event at canvas pixel ``(x, y)`` (canvas shown at its own size)."""
    w.handle_event(
        {
            "type": kind,
            "button": button,
            "shiftKey": shift,
            "ctrlKey": False,
            "relativeX": x,
            "relativeY": y,
            "boundingRectWidth": w.canvas_size[0],
            "boundingRectHeight": w.canvas_size[1],
        }
    )


def click(w: SamWidget, x: float, y: float, **kwargs: Any) -> None:
    mouse(w, "mousedown", x, y, **kwargs)
    mouse(w, "mouseup", x, y, **kwargs)


def key(w: SamWidget, name: str, *, ctrl: bool = False) -> None:
    w.handle_event({"type": "keydown", "key": name, "ctrlKey": ctrl})


def overlay(w: SamWidget) -> np.ndarray:
    """``hxwx4`` RGBA the browser gets for the mask layer (the PNG in ``w.overlay``)."""
    return np.asarray(Image.open(io.BytesIO(w.overlay.value)).convert("RGBA"))


def shown_candidate(w: SamWidget) -> np.ndarray:
    """``hxw`` bool: mask-layer pixels that carry the candidate colour."""
    frame = overlay(w)
    assert w.candidate_color is not None
    return (frame[..., 3] > 0) & np.all(frame[..., :3] == w.candidate_color, axis=-1)


def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` (every 10 ms) until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s")


def controls(w: SamWidget) -> dict[str, Any]:
    """What the toolbar shows and offers, as a person would read it."""
    tb = w.toolbar
    return {
        "candidates": [label for label, _ in tb.candidates.options]
        if tb.candidates.layout.display != "none"
        else [],
        "pressed": tb.candidates.value,
        "accept": not tb.accept.disabled,
        "undo": not tb.undo.disabled,
        "clear": not tb.clear.disabled,
        "text": not tb.text.disabled,
        "kept": tb.kept.value,
    }


def expected_overlay(w: SamWidget, mask: np.ndarray) -> np.ndarray:
    """Canvas pixels that show ``mask``."""
    return shown_image_pixels(mask, scale=w.scale, canvas_size=w.canvas_size)


def test_click_sends_image_coordinates_and_draws_best_mask(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    call = w.client.predict_calls[-1]
    assert call["points"] == [list(canvas_to_image(120, 75, w.scale))]
    assert call["labels"] == [1]
    assert call["mask_input"] is None
    answer = w.client.answers[-1]
    assert len(w.candidates) == len(answer.masks)
    assert [c.raw_score for c in w.candidates] == pytest.approx(answer.scores.tolist())
    assert w.selected == 0
    assert answer.masks[0].any()
    np.testing.assert_array_equal(shown_candidate(w), expected_overlay(w, answer.masks[0]))
    assert w.latency_ms is not None
    assert w.status == f"3 masks in {w.latency_ms:.0f} ms · showing 1 of 3: score {w.candidates[0].score:.2f}"


def test_right_click_and_shift_click_add_negative_points(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    click(w, 20, 20, button=2)
    click(w, 180, 130, shift=True)
    assert [p.positive for p in w.current.points] == [True, False, False]
    assert w.client.predict_calls[-1]["labels"] == [1, 0, 0]


def test_each_new_point_refines_the_previous_answer(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    first_logits = w.client.answers[-1].logits_id
    click(w, 20, 20, button=2)
    assert first_logits is not None
    assert w.client.predict_calls[-1]["mask_input"] == first_logits


def test_drag_sends_a_box_in_image_pixels(make_widget: Any) -> None:
    w = make_widget()
    mouse(w, "mousedown", 150, 120)
    mouse(w, "mousemove", 100, 80)
    mouse(w, "mouseup", 60, 40)
    x1, y1 = canvas_to_image(60, 40, w.scale)
    x2, y2 = canvas_to_image(150, 120, w.scale)
    assert w.client.predict_calls[-1]["box"] == [x1, y1, x2, y2]
    assert "points" not in w.client.predict_calls[-1]
    assert len(w.candidates) > 0


def test_candidate_switch_by_key_needs_no_server_round_trip(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    calls = len(w.client.predict_calls)
    key(w, "3")
    assert len(w.client.predict_calls) == calls
    assert w.selected == 2
    assert w.toolbar.candidates.value == 2
    np.testing.assert_array_equal(shown_candidate(w), expected_overlay(w, w.candidates[2].mask))
    w.toolbar.candidates.value = 1  # the toggle buttons
    assert w.selected == 1
    np.testing.assert_array_equal(shown_candidate(w), expected_overlay(w, w.candidates[1].mask))


def test_undo_restores_the_previous_answer_without_asking_again(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    before = list(w.candidates)
    click(w, 20, 20, button=2)
    calls = len(w.client.predict_calls)
    key(w, "z", ctrl=True)
    assert len(w.client.predict_calls) == calls
    assert len(w.current.points) == 1
    assert [c.mask is b.mask for c, b in zip(w.candidates, before, strict=True)] == [True] * len(before)
    w.undo()
    assert w.current.points == () and w.candidates == []
    w.undo()
    assert w.status.startswith("nothing to undo")


def test_accept_stores_mask_with_label_and_starts_next_object(make_widget: Any) -> None:
    w = make_widget(labels=["cat", "dog"])
    click(w, 120, 75)
    key(w, "2")
    chosen = w.candidates[1]
    w.toolbar.label.value = "dog"
    w.toolbar.accept.click()
    assert len(w.masks) == 1
    assert w.masks[0].label == "dog"
    assert w.masks[0].mask is chosen.mask and w.masks[0].score == chosen.score
    assert w.current.points == () and w.candidates == []
    click(w, 20, 20)
    assert w.client.predict_calls[-1]["mask_input"] is None
    assert w.client.predict_calls[-1]["points"] == [list(canvas_to_image(20, 20, w.scale))]


def test_accept_without_candidate_raises_and_enter_reports_it(make_widget: Any) -> None:
    w = make_widget()
    with pytest.raises(InvalidInput, match="click on the object"):
        w.accept()
    key(w, "Enter")
    assert w.status.startswith("error:")


def test_clear_forgets_the_current_object(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    key(w, "Escape")
    assert w.current.points == () and w.candidates == []


def test_export_to_coco_and_png_round_trip(make_widget: Any, tmp_path: Any) -> None:
    from pycocotools import mask as coco_mask

    w = make_widget(labels=["thing"])
    click(w, 120, 75)
    kept = w.accept()
    coco = w.to_coco(file_name="scene.png")
    ann = coco["annotations"][0]
    rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
    np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), kept.mask)
    assert coco["categories"] == [{"id": 1, "name": "thing"}]
    assert ann["area"] == int(kept.mask.sum())
    path = w.save_png(tmp_path / "masks.png")
    again = make_widget()
    again.load_masks(path, label="thing")
    again.load_masks(coco)
    assert len(again.masks) == 2
    for loaded in again.masks:
        np.testing.assert_array_equal(loaded.mask, kept.mask)


def test_load_masks_rejects_masks_of_another_size(make_widget: Any) -> None:
    w = make_widget()
    with pytest.raises(InvalidInput, match="HxW"):
        w.load_masks([np.zeros((10, 10), dtype=bool)])


def test_loaded_masks_are_drawn_in_their_label_colour(make_widget: Any) -> None:
    w = make_widget(labels=["a"])
    mask = np.zeros((300, 400), dtype=bool)
    mask[:150, :200] = True
    w.load_masks([mask], label="a")
    frame = overlay(w)
    np.testing.assert_array_equal(frame[..., 3] > 0, expected_overlay(w, mask))
    assert {tuple(c) for c in frame[frame[..., 3] > 0][:, :3]} == {label_color(0)}


def test_opacity_slider_sets_the_fill_alpha_and_outlines_stay_opaque(make_widget: Any) -> None:
    w = make_widget(labels=["a"])
    mask = np.zeros((300, 400), dtype=bool)
    mask[60:240, 100:300] = True
    w.load_masks([mask], label="a")
    w.toolbar.opacity.value = 0.2
    alpha = overlay(w)[..., 3]
    shown = expected_overlay(w, mask)
    inner = shown.copy()
    inner[1:-1, 1:-1] &= shown[:-2, 1:-1] & shown[2:, 1:-1] & shown[1:-1, :-2] & shown[1:-1, 2:]
    assert set(np.unique(alpha[inner]).tolist()) == {round(0.2 * 255)}
    assert set(np.unique(alpha[shown & ~inner]).tolist()) == {255}
    assert set(np.unique(alpha[~shown]).tolist()) == {0}


def test_click_during_embedding_is_sent_when_ready(client: Any) -> None:
    client.hold = True
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    click(w, 120, 75)
    assert w.status.startswith("computing embedding…") and "sent when it is ready" in w.status
    assert client.predict_calls == []
    ticked = wait_until(lambda: "0.0 s" not in w.toolbar.status.value and w.toolbar.status.value)
    assert "computing embedding… " in ticked and " s · your prompt is sent when it is ready" in ticked
    assert w.toolbar.progress.layout.display is None
    client.release.set()
    w.wait_ready(120)
    assert w.toolbar.progress.layout.display == "none"
    assert len(client.predict_calls) == 1
    assert len(w.candidates) > 0 and len(w.editor.history) == 2


def test_new_browser_client_gets_every_layer_redrawn(
    make_widget: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_widget()
    click(w, 120, 75)
    drawn: list[int] = []
    for index in range(3):
        layer = w.canvas[index]
        monkeypatch.setattr(layer, "put_image_data", lambda *a, i=index, **k: drawn.append(i))
        monkeypatch.setattr(layer, "draw_image", lambda *a, i=index, **k: drawn.append(i))
        monkeypatch.setattr(layer, "fill_circle", lambda *a, i=index, **k: drawn.append(i))
    w.canvas[2]._handle_frontend_event(None, {"event": "client_ready"}, [])
    assert set(drawn) == {0, 1, 2}


def test_embedding_failure_is_shown_and_raised(local_client: Any) -> None:
    from tests.widget.conftest import RecordingClient

    class Failing(RecordingClient):
        def add_image(self, image: Any) -> Any:
            raise InvalidInput("image too small to embed")

    w = SamWidget(scene(), Failing(local_client))
    with pytest.raises(InvalidInput, match="too small"):
        w.wait_ready(30)
    assert "too small" in w.toolbar.status.value


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.tuples(st.integers(8, 900), st.integers(8, 900)),
    frac=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    shown=st.floats(0.5, 2.0),
)
def test_clicks_map_to_original_pixels_at_any_scale_and_css_size(
    local_client: Any, size: tuple[int, int], frac: tuple[float, float], shown: float
) -> None:
    from tests.widget.conftest import RecordingClient

    width, height = size
    client = RecordingClient(local_client)
    w = SamWidget(scene(height, width), client, max_canvas_size=(160, 120))
    w.wait_ready(120)
    cw, ch = w.canvas_size
    css_x, css_y = frac[0] * cw * shown, frac[1] * ch * shown
    event = {
        "button": 0,
        "relativeX": css_x,
        "relativeY": css_y,
        "boundingRectWidth": cw * shown,
        "boundingRectHeight": ch * shown,
    }
    w.handle_event(dict(event, type="mousedown"))
    w.handle_event(dict(event, type="mouseup"))
    expected = canvas_to_image(frac[0] * cw, frac[1] * ch, w.scale)
    sent = client.predict_calls[-1]["points"][0]
    assert sent == pytest.approx([min(expected[0], width), min(expected[1], height)])
    assert 0 <= sent[0] <= width and 0 <= sent[1] <= height


def test_text_field_sends_a_text_prompt_with_the_current_box(client: Any) -> None:
    from tests.widget.conftest import RecordingClient

    class NoTextMatch(RecordingClient):
        """Records the text prompt; answers it with no object (CLIP is not the widget's concern)."""

        def predict(self, image_id: str, **kwargs: Any) -> list[Any]:
            if kwargs.get("text"):
                self.predict_calls.append(dict(kwargs, image_id=image_id))
                return []
            return super().predict(image_id, **kwargs)

    recorder = NoTextMatch(client.inner)
    w = SamWidget(scene(), recorder, max_canvas_size=(200, 200))
    w.wait_ready(120)
    mouse(w, "mousedown", 60, 40)
    mouse(w, "mouseup", 150, 120)
    w.toolbar.text.value = "  a bright square "
    call = recorder.predict_calls[-1]
    assert call["text"] == "a bright square"
    assert w.current.box is not None and call["box"] == w.current.box.as_list()
    assert w.toolbar.text.value == "  a bright square "  # kept after the error, to edit or retry
    assert w.status_kind == "error"
    assert (
        w.status.startswith('error: no object matches "a bright square"') and "another click" not in w.status
    )
    assert "Press Esc (which drops the box and the text), type the text again" in w.status
    assert "pred_iou_thresh" in w.status
    w.toolbar.find.click()  # retry (e.g. after lowering the thresholds): asks again
    assert [c.get("text") for c in recorder.predict_calls[-2:]] == ["a bright square"] * 2
    with pytest.raises(InvalidInput, match="text prompt is empty"):
        w.set_text("   ")


def blue_object_scene() -> np.ndarray:
    """``300x400`` RGB: grey background, a blue rectangle in the middle."""
    image = np.full((300, 400, 3), 150, dtype=np.uint8)
    image[100:200, 150:300] = (20, 50, 220)
    return image


def test_shown_candidate_is_outlined_in_a_colour_that_contrasts_with_the_pixels_under_it(
    make_widget: Any,
) -> None:
    w = make_widget(blue_object_scene())
    click(w, 112, 75)
    chosen = w.current.chosen
    assert chosen is not None and chosen.mask.any()
    mean = w.pixels[chosen.mask].mean(axis=0)
    distances = [np.sum((np.asarray(c) - mean) ** 2) for c in CONTRAST_PALETTE]
    assert w.candidate_color == CONTRAST_PALETTE[int(np.argmax(distances))]
    if DEMO_WEIGHTS.is_file():  # the demo model finds the blue object: yellow is farthest from blue
        assert chosen.mask[100:200, 150:300].mean() > 0.9 and chosen.mask.mean() < 0.2
        assert w.candidate_color == (255, 255, 0)
    frame = overlay(w)
    shown = expected_overlay(w, chosen.mask)
    ring = outline(shown, CANDIDATE_OUTLINE)
    assert ring.any() and (shown & ~ring).any()
    assert (frame[ring, 3] == 255).all()  # an opaque outline ...
    assert (frame[shown & ~ring, 3] == round(0.5 * 255)).all()  # ... around the see-through fill
    assert (frame[~shown, 3] == 0).all()
    assert w.toolbar.opacity.value == 0.5


def test_the_palette_can_be_set_by_the_user(make_widget: Any) -> None:
    w = make_widget(palette=["#00ff00"])
    click(w, 120, 75)
    assert w.candidate_color == (0, 255, 0)
    w.palette = [(255, 0, 0)]
    assert w.candidate_color == (255, 0, 0)
    assert shown_candidate(w).any()
    with pytest.raises(InvalidInput, match="is not a colour"):
        w.palette = ["blueish"]
    with pytest.raises(InvalidInput, match="is not a colour"):
        make_widget(palette=[(0, 0)], wait=False)


def test_a_request_shows_busy_disables_the_controls_and_clears_when_the_answer_arrives(
    local_client: Any,
) -> None:
    seen: list[dict[str, Any]] = []

    class Watching(RecordingClient):
        widget: SamWidget

        def predict(self, image_id: str, **kwargs: Any) -> list[ObjectMasks]:
            w = self.widget
            seen.append({"busy": w.busy, "status": w.status, "kind": w.status_kind, **controls(w)})
            # the status line ticks while the kernel waits for the model
            wait_until(lambda: re.search(r"segmenting… \d+\.\d s", w.toolbar.status.value), timeout=10)
            seen[-1]["progress"] = w.toolbar.progress.layout.display
            return super().predict(image_id, **kwargs)

    client = Watching(local_client)
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    client.widget = w
    w.wait_ready(120)
    click(w, 120, 75)
    during = seen[0]
    assert during["busy"] is True and during["status"] == "segmenting…" and during["kind"] == "busy"
    assert not any(during[name] for name in ("accept", "undo", "clear", "text"))
    assert during["progress"] is None  # shown
    assert w.busy is False and w.status_kind == "info" and w.status.startswith("3 masks in")
    assert w.toolbar.progress.layout.display == "none"
    assert "fa-spin" not in w.toolbar.status.value
    assert controls(w) | {"candidates": None} == {
        "candidates": None,
        "pressed": 0,
        "accept": True,
        "undo": True,
        "clear": True,
        "text": True,
        "kept": "kept: 0 masks",
    }


def test_a_failed_request_shows_the_whole_error_and_leaves_the_state_as_it_was(local_client: Any) -> None:
    from backend.api.errors import SamServerError

    detail = "the model server is overloaded: " + "retry in a few seconds, or add workers; " * 8

    class Failing(RecordingClient):
        fail = False

        def predict(self, image_id: str, **kwargs: Any) -> list[ObjectMasks]:
            if self.fail:
                raise SamServerError(503, "unavailable", detail)
            return super().predict(image_id, **kwargs)

    client = Failing(local_client)
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    w.wait_ready(120)
    click(w, 120, 75)
    before = (w.current, list(w.candidates))
    client.fail = True
    click(w, 20, 20, button=2)
    assert w.status == f"error: {detail}" and w.status_kind == "error" and not w.busy
    assert html.escape(detail) in w.toolbar.status.value  # in full: the toolbar wraps it
    assert w.current is before[0] and w.candidates == before[1]
    assert controls(w)["accept"] and controls(w)["text"]
    with pytest.raises(SamServerError):
        w.add_point(10, 10)  # from code the error is raised too


def test_controls_and_status_follow_accept_clear_and_undo(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    key(w, "2")
    assert controls(w)["pressed"] == 1 and w.status.startswith("showing 2 of 3: score ")
    first = [c.mask for c in w.candidates]
    click(w, 20, 20, button=2)
    assert controls(w)["pressed"] == 0 and w.status.startswith("3 masks in")
    key(w, "z", ctrl=True)
    assert [c.mask for c in w.candidates] == first
    assert controls(w)["pressed"] == 1 and w.status.startswith("undone · showing 2 of 3")
    assert len(controls(w)["candidates"]) == 3
    key(w, "Escape")
    empty = {"candidates": [], "pressed": None, "accept": False, "undo": False, "clear": False}
    assert {k: controls(w)[k] for k in empty} == empty
    assert w.status == "cleared · click on an object" and w.candidates == []
    key(w, "z", ctrl=True)
    assert w.status.startswith("nothing to undo")
    click(w, 120, 75)
    key(w, "Enter")
    assert {k: controls(w)[k] for k in empty} == empty
    assert controls(w)["kept"] == "kept: 1 mask"
    assert w.status.startswith('kept "object" (score ') and "kept: 1 mask" in w.status
    shown = overlay(w)
    assert (shown[..., 3] > 0).any() and w.candidate_color is None  # only the kept mask, in its label colour
    w.load_masks([w.masks[0].mask])
    assert controls(w)["kept"] == "kept: 2 masks" and w.status == "loaded 1 mask · kept: 2 masks"


def test_scores_are_shown_and_exported_as_probabilities_with_the_raw_iou_kept(local_client: Any) -> None:
    class Overconfident(RecordingClient):
        """A decoder whose predicted IoU exceeds 1, as SAM's sometimes does."""

        def predict(self, image_id: str, **kwargs: Any) -> list[ObjectMasks]:
            answers = super().predict(image_id, **kwargs)
            for a in answers:
                a.scores = a.scores * 0 + np.asarray([1.06, 0.98, 0.5], dtype=np.float32)[: len(a.scores)]
            return answers

    w = SamWidget(scene(), Overconfident(local_client), max_canvas_size=(200, 200))
    w.wait_ready(120)
    click(w, 120, 75)
    assert controls(w)["candidates"] == ["1: 1.00", "2: 0.98", "3: 0.50"]
    assert "predicted IoU 1.060" in w.toolbar.candidates.tooltips[0]
    assert w.status.endswith("showing 1 of 3: score 1.00")
    kept = w.accept()
    assert kept.score == 1.0 and kept.predicted_iou == pytest.approx(1.06)
    ann = w.to_coco()["annotations"][0]
    assert ann["score"] == 1.0 and ann["predicted_iou"] == pytest.approx(1.06)


def test_the_gestures_legend_is_visible_and_can_be_hidden(make_widget: Any) -> None:
    w = make_widget()
    tb = w.toolbar
    assert tb.legend in tb.box.children and tb.legend.layout.display is None and tb.help.value
    for gesture in [
        "left click",
        "right click or Shift+click",
        "drag",
        "1 / 2 / 3",
        "Ctrl+Z",
        "Esc",
        "Enter",
    ]:
        assert gesture in tb.legend.value
    tb.help.value = False
    assert tb.legend.layout.display == "none"
    tb.help.value = True
    assert tb.legend.layout.display is None


def test_a_text_answer_keeps_the_text_and_the_same_text_is_not_asked_twice(local_client: Any) -> None:
    class TextMatches(RecordingClient):
        """Answers text prompts with the bright rectangle (CLIP is not the widget's concern)."""

        def predict(self, image_id: str, **kwargs: Any) -> list[ObjectMasks]:
            if not kwargs.get("text"):
                return super().predict(image_id, **kwargs)
            self.predict_calls.append(dict(kwargs, image_id=image_id))
            masks = np.zeros((2, 300, 400), dtype=bool)
            masks[:, 100:200, 150:300] = True
            scores = np.asarray([0.31, 0.22], dtype=np.float32)
            return [ObjectMasks(masks=masks, scores=scores, stability_scores=scores, labels=["square"] * 2)]

    client = TextMatches(local_client)
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    w.wait_ready(120)
    w.toolbar.text.value = "bright square"
    assert len(client.predict_calls) == 1 and w.status.startswith('2 masks for "bright square" in ')
    assert w.toolbar.text.value == "bright square"
    w.toolbar.find.click()  # the same prompt again: the answer is already shown
    assert len(client.predict_calls) == 1
    kept = w.accept()
    assert kept.raw_scores == {"text_similarity": pytest.approx(0.31)} and kept.predicted_iou is None
    assert w.toolbar.text.value == ""  # the next object starts with an empty field
