"""Browser events (as ipyevents delivers them) -> prompts and commands.

ipycanvas' own mouse callbacks carry neither the button nor the modifier
keys, so the widget listens through :class:`ipyevents.Event`, whose messages
are dicts with ``type``, ``button`` (0 left, 2 right), ``shiftKey``,
``ctrlKey``, ``metaKey``, ``key``, ``relativeX`` / ``relativeY`` (CSS pixels
from the element's top-left corner, rounded) and ``boundingRectWidth`` /
``boundingRectHeight`` (the element's CSS size).

Translation rules, as users of SAM tools expect: a left click is a positive
point; a right click or a Shift+click is a negative point; a left drag longer
than ``drag_threshold`` canvas pixels is a box; Ctrl/Cmd+Z undoes, 1/2/3 pick a
candidate (1-9 pick or unpick the instances of a concept), Enter accepts,
Shift+Enter accepts every instance, Escape clears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.formats.coordinates import canvas_to_image, screen_to_canvas
from widget.state import Box, Point

LEFT_BUTTON = 0
RIGHT_BUTTON = 2

GESTURES: tuple[tuple[str, str], ...] = (
    ("left click", "foreground point"),
    ("right click or Shift+click", "background point"),
    ("drag", "box"),
    ("1 / 2 / 3", "show candidate 1, 2 or 3"),
    ("Ctrl+Z (Cmd+Z)", "undo"),
    ("Esc", "clear the current object"),
    ("Enter", "accept the shown mask"),
)
"""Every gesture :class:`EventTranslator` understands, as ``(gesture, effect)`` for the legend.

Keys act while the mouse is over the image.
"""
CONCEPT_GESTURES: tuple[tuple[str, str], ...] = (
    ("1 … 9 (instances of a word)", "pick or unpick instance 1 … 9"),
    ("Enter (instances)", "accept the picked instances"),
    ("Shift+Enter", "accept every instance shown"),
)
"""The gestures that act on the instances of a word, listed too when the model answers concepts (SAM 3)."""


@dataclass(frozen=True)
class PointAction:
    """Add a click prompt (original-image pixels)."""

    point: Point


@dataclass(frozen=True)
class BoxAction:
    """Set the box prompt (original-image pixels)."""

    box: Box


@dataclass(frozen=True)
class DragPreview:
    """A drag in progress: draw the rubber band, send nothing to the model."""

    box: Box


@dataclass(frozen=True)
class KeyCommand:
    """A keyboard command: ``"undo"``, ``"select"`` (with ``index``), ``"accept"``, ``"accept_all"`` or ``"clear"``.

    ``"select"`` shows candidate ``index`` or, on the instances of a concept, picks or unpicks it.
    """

    name: str
    index: int = 0


Action = PointAction | BoxAction | DragPreview | KeyCommand


@dataclass
class _Press:
    canvas_x: float
    canvas_y: float
    button: int
    shift: bool
    last_x: float
    last_y: float


class EventTranslator:
    """Turns a stream of ipyevents dicts into :data:`Action` values.

    Args:
        scale: Canvas pixels per original-image pixel (from ``fit_scale``).
        canvas_size: ``(width, height)`` of the canvas in canvas pixels.
        image_size: ``(width, height)`` of the original image in pixels.
        drag_threshold: Pointer travel, in canvas pixels, above which a press
            and release is a box rather than a click.
    """

    def __init__(
        self,
        *,
        scale: float,
        canvas_size: tuple[int, int],
        image_size: tuple[int, int],
        drag_threshold: float = 4.0,
    ) -> None:
        self.scale = scale
        self.canvas_size = canvas_size
        self.image_size = image_size
        self.drag_threshold = drag_threshold
        self._press: _Press | None = None

    def handle(self, event: dict[str, Any]) -> Action | None:
        """Translate one event; None when it changes nothing the widget shows."""
        kind = event.get("type") or event.get("event")
        if kind == "keydown":
            return self._key(event)
        if kind not in ("mousedown", "mousemove", "mouseup", "mouseleave"):
            return None  # contextmenu and friends: only suppressed, never acted on
        x, y = self.event_to_canvas(event)
        if kind == "mousedown":
            self._press = _Press(x, y, int(event.get("button", 0)), bool(event.get("shiftKey")), x, y)
            return None
        press = self._press
        if press is None:
            return None
        if kind == "mousemove":
            press.last_x, press.last_y = x, y
            if press.button == LEFT_BUTTON and not press.shift and self._dragged(press, x, y):
                return DragPreview(self._box(press, x, y))
            return None
        self._press = None
        if kind == "mouseleave":
            x, y = press.last_x, press.last_y
        if press.button == LEFT_BUTTON and not press.shift and self._dragged(press, x, y):
            return BoxAction(self._box(press, x, y))
        if kind == "mouseleave":
            return None
        positive = press.button == LEFT_BUTTON and not press.shift
        image_x, image_y = self.canvas_to_image(press.canvas_x, press.canvas_y)
        return PointAction(Point(image_x, image_y, positive))

    def event_to_canvas(self, event: dict[str, Any]) -> tuple[float, float]:
        """Canvas pixels of a mouse event.

        ``relativeX`` / ``relativeY`` are CSS pixels; when the page shows the
        canvas at another size than its own (a narrow notebook column), the
        element's bounding rectangle gives the ratio, exactly as ipycanvas
        does for its own mouse events.
        """
        return screen_to_canvas(
            float(event.get("relativeX", 0.0)),
            float(event.get("relativeY", 0.0)),
            shown_size=(
                float(event.get("boundingRectWidth") or 0.0),
                float(event.get("boundingRectHeight") or 0.0),
            ),
            canvas_size=self.canvas_size,
        )

    def canvas_to_image(self, x: float, y: float) -> tuple[float, float]:
        """Canvas pixels -> original-image pixels, clamped to the image."""
        image_x, image_y = canvas_to_image(x, y, self.scale)
        width, height = self.image_size
        return min(max(image_x, 0.0), float(width)), min(max(image_y, 0.0), float(height))

    def _dragged(self, press: _Press, x: float, y: float) -> bool:
        return max(abs(x - press.canvas_x), abs(y - press.canvas_y)) > self.drag_threshold

    def _box(self, press: _Press, x: float, y: float) -> Box:
        x_a, y_a = self.canvas_to_image(press.canvas_x, press.canvas_y)
        x_b, y_b = self.canvas_to_image(x, y)
        return Box.from_corners(x_a, y_a, x_b, y_b)

    @staticmethod
    def _key(event: dict[str, Any]) -> KeyCommand | None:
        key = str(event.get("key", ""))
        if key.lower() == "z" and (event.get("ctrlKey") or event.get("metaKey")):
            return KeyCommand("undo")
        if len(key) == 1 and "1" <= key <= "9":
            return KeyCommand("select", int(key) - 1)
        if key == "Enter":
            return KeyCommand("accept_all" if event.get("shiftKey") else "accept")
        if key == "Escape":
            return KeyCommand("clear")
        return None
