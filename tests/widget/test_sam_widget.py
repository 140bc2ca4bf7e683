"""SamWidget's handlers driven directly, against a real in-process model server."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.errors import InvalidInput
from backend.formats.coordinates import canvas_to_image
from tests.widget.conftest import scene, shown_image_pixels
from widget.drawing import CANDIDATE_COLOR, label_color
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
    return (frame[..., 3] > 0) & np.all(frame[..., :3] == CANDIDATE_COLOR, axis=-1)


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
    assert [c.score for c in w.candidates] == pytest.approx(answer.scores.tolist())
    assert w.selected == 0
    np.testing.assert_array_equal(shown_candidate(w), expected_overlay(w, answer.masks[0]))
    assert w.latency_ms is not None and "ms" in w.status


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
    assert w.status == "nothing to undo"


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


def test_opacity_slider_sets_overlay_alpha(make_widget: Any) -> None:
    w = make_widget()
    click(w, 120, 75)
    w.toolbar.opacity.value = 0.2
    alphas = set(np.unique(overlay(w)[..., 3]).tolist())
    assert alphas <= {0, round(0.2 * 255)}
    assert round(0.2 * 255) in alphas or not w.candidates[0].mask.any()


def test_click_during_embedding_is_sent_when_ready(client: Any) -> None:
    client.hold = True
    w = SamWidget(scene(), client, max_canvas_size=(200, 200))
    click(w, 120, 75)
    assert "computing embedding" in w.status
    assert client.predict_calls == []
    time.sleep(0.6)  # the status line ticks while the embedding is computed
    assert w.toolbar.status.value.startswith("computing embedding…")
    assert w.toolbar.progress.layout.visibility == "visible"
    client.release.set()
    w.wait_ready(120)
    assert w.toolbar.progress.layout.visibility == "hidden"
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
    assert w.toolbar.text.value == ""
    assert "no mask" in w.status
    with pytest.raises(InvalidInput, match="text prompt is empty"):
        w.set_text("   ")
