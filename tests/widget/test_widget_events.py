"""Browser events -> prompts: buttons, modifiers, drags, keys and the CSS -> canvas -> image mapping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.formats.coordinates import canvas_to_image, fit_scale, image_to_canvas
from widget.events import BoxAction, DragPreview, EventTranslator, KeyCommand, PointAction
from widget.state import Box, Point


def translator(
    scale: float = 0.5, canvas: tuple[int, int] = (200, 150), image: tuple[int, int] = (400, 300)
) -> EventTranslator:
    return EventTranslator(scale=scale, canvas_size=canvas, image_size=image)


def ev(
    kind: str,
    x: float,
    y: float,
    *,
    button: int = 0,
    shift: bool = False,
    shown: tuple[float, float] = (200, 150),
) -> dict[str, Any]:
    return {
        "type": kind,
        "button": button,
        "shiftKey": shift,
        "relativeX": x,
        "relativeY": y,
        "boundingRectWidth": shown[0],
        "boundingRectHeight": shown[1],
    }


def press_release(t: EventTranslator, x0: float, y0: float, x1: float, y1: float, **kw: Any) -> Any:
    assert t.handle(ev("mousedown", x0, y0, **kw)) is None
    return t.handle(ev("mouseup", x1, y1, **kw))


def test_left_click_is_a_positive_point_in_image_pixels() -> None:
    assert press_release(translator(), 10, 20, 10, 20) == PointAction(Point(20.0, 40.0, True))


@pytest.mark.parametrize("kw", [{"button": 2}, {"shift": True}])
def test_right_click_or_shift_click_is_a_negative_point(kw: dict[str, Any]) -> None:
    assert press_release(translator(), 10, 20, 10, 20, **kw) == PointAction(Point(20.0, 40.0, False))


def test_small_jitter_is_still_a_click_at_the_press_position() -> None:
    assert press_release(translator(), 10, 20, 13, 17) == PointAction(Point(20.0, 40.0, True))


def test_drag_previews_then_gives_a_normalised_box() -> None:
    t = translator()
    t.handle(ev("mousedown", 100, 80))
    assert t.handle(ev("mousemove", 50, 30)) == DragPreview(Box(100.0, 60.0, 200.0, 160.0))
    assert t.handle(ev("mouseup", 40, 30)) == BoxAction(Box(80.0, 60.0, 200.0, 160.0))


def test_drag_leaving_the_canvas_ends_at_the_last_position() -> None:
    t = translator()
    t.handle(ev("mousedown", 10, 10))
    t.handle(ev("mousemove", 60, 70))
    assert t.handle(ev("mouseleave", 250, 90)) == BoxAction(Box(20.0, 20.0, 120.0, 140.0))
    assert t.handle(ev("mouseup", 60, 70)) is None


def test_contextmenu_and_release_without_press_do_nothing() -> None:
    t = translator()
    assert t.handle(ev("contextmenu", 10, 10, button=2)) is None
    assert t.handle(ev("mouseup", 10, 10)) is None


def test_points_are_clamped_to_the_image() -> None:
    action = press_release(translator(), 205, -3, 205, -3)
    assert action == PointAction(Point(400.0, 0.0, True))


@pytest.mark.parametrize(
    ("event", "command"),
    [
        ({"key": "z", "ctrlKey": True}, KeyCommand("undo")),
        ({"key": "Z", "metaKey": True}, KeyCommand("undo")),
        ({"key": "2"}, KeyCommand("select", 1)),
        ({"key": "Enter"}, KeyCommand("accept")),
        ({"key": "Escape"}, KeyCommand("clear")),
        ({"key": "z"}, None),
        ({"key": "4"}, KeyCommand("select", 3)),  # instances 1-9 of a concept
        ({"key": "9"}, KeyCommand("select", 8)),
        ({"key": "0"}, None),
        ({"key": "F1"}, None),
        ({"key": "Enter", "shiftKey": True}, KeyCommand("accept_all")),
    ],
)
def test_keys(event: dict[str, Any], command: KeyCommand | None) -> None:
    assert translator().handle(dict(event, type="keydown")) == command


@given(
    image=st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
    frac=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    zoom=st.floats(0.25, 4.0),
)
def test_css_position_maps_to_the_image_pixel_under_it(
    image: tuple[int, int], frac: tuple[float, float], zoom: float
) -> None:
    scale = fit_scale(image[0], image[1], 640, 480)
    canvas = (max(1, round(image[0] * scale)), max(1, round(image[1] * scale)))
    t = EventTranslator(scale=scale, canvas_size=canvas, image_size=image)
    shown = (canvas[0] * zoom, canvas[1] * zoom)
    css = (frac[0] * shown[0], frac[1] * shown[1])
    action = press_release(t, *css, *css, shown=shown)
    expected = canvas_to_image(frac[0] * canvas[0], frac[1] * canvas[1], scale)
    assert action.point.x == pytest.approx(min(expected[0], image[0]), rel=1e-9, abs=1e-9)
    assert action.point.y == pytest.approx(min(expected[1], image[1]), rel=1e-9, abs=1e-9)
    back = image_to_canvas(action.point.x, action.point.y, scale)
    assert back[0] <= canvas[0] * (1 + 1e-9) + 1 and back[1] <= canvas[1] * (1 + 1e-9) + 1
