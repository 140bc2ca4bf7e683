"""The image on screen: three canvas layers, the overlay PNG and the browser events that reach them.

Layers of the :class:`ipycanvas.MultiCanvas`: 0 the image (scaled to fit),
1 the masks (accepted ones in their label colours, the shown candidate on
top, filled and outlined in a colour that contrasts with the pixels under
it, or every instance of a concept in its own colour), 2 the prompts (clicks,
box, rubber band) and the instances' numbered tags. Browser events arrive through
ipyevents (it knows the mouse button and the modifier keys, and prevents the
browser's context menu on the canvas). ipycanvas and ipyevents are imported
when a view is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from backend.formats.coordinates import fit_scale
from widget.drawing import (
    CanvasGrid,
    Color,
    canvas_size_for,
    draw_instance_tags,
    draw_prompts,
    instance_tags,
    mask_layers,
    overlay_png,
    scaled_image,
)
from widget.events import EventTranslator
from widget.state import AcceptedMask, Box, ObjectState, Point

IMAGE_LAYER, MASK_LAYER, PROMPT_LAYER = 0, 1, 2
MASK_EVENTS = ["mousedown", "mouseup", "mouseleave", "contextmenu", "keydown"]
MOVE_THROTTLE_MS = 40


class CanvasView:
    """One image shown on a three-layer canvas, scaled down to fit.

    Args:
        pixels: ``HxWx3`` uint8 RGB image.
        max_canvas_size: ``(width, height)`` the canvas may take.
        on_event: Called with each ipyevents message (mouse buttons, moves, keys).

    Attributes:
        image_size: ``(width, height)`` of the original image.
        scale: Canvas pixels per image pixel.
        canvas_size: ``(width, height)`` of the canvas in canvas pixels.
        grid: Which image pixel each canvas pixel shows.
        shown_pixels: ``hxwx3`` uint8 image at canvas size (layer 0).
        translator: Turns the events into prompts in original-image pixels.
        canvas: The ``ipycanvas.MultiCanvas``.
        overlay: ``ipywidgets.Image`` holding the mask layer's PNG.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        *,
        max_canvas_size: tuple[int, int],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        from ipycanvas import MultiCanvas
        from ipyevents import Event

        self.image_size = (int(pixels.shape[1]), int(pixels.shape[0]))
        self.scale = fit_scale(*self.image_size, *max_canvas_size)
        self.canvas_size = canvas_size_for(self.image_size, self.scale)
        self.grid = CanvasGrid.build(
            scale=self.scale, canvas_size=self.canvas_size, image_size=self.image_size
        )
        self.shown_pixels = scaled_image(pixels, self.canvas_size)
        self.translator = EventTranslator(
            scale=self.scale, canvas_size=self.canvas_size, image_size=self.image_size
        )
        self.canvas = MultiCanvas(
            3,
            width=self.canvas_size[0],
            height=self.canvas_size[1],
            layout=widgets.Layout(width=self.css_width, max_width="100%", height="auto"),
        )
        self.overlay = widgets.Image(format="png")
        self._mouse = Event(source=self.canvas, watched_events=MASK_EVENTS, prevent_default_action=True)
        self._moves = Event(
            source=self.canvas,
            watched_events=["mousemove"],
            throttle_or_debounce="throttle",
            wait=MOVE_THROTTLE_MS,
        )
        self._mouse.on_dom_event(on_event)
        self._moves.on_dom_event(on_event)

    @property
    def css_width(self) -> str:
        """The canvas width as CSS (the toolbar takes the same, so text wraps under the image)."""
        return f"{self.canvas_size[0]}px"

    def on_client_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a browser view attaches (page reload, second view, Voila)."""
        self.canvas.on_client_ready(callback)

    def draw(
        self,
        state: ObjectState,
        *,
        masks: Sequence[AcceptedMask],
        labels: Sequence[str],
        palette: Sequence[Color],
        opacity: float,
        image: bool = False,
    ) -> Color | None:
        """Redraw the mask and prompt layers (and the image layer if ``image``) in one message.

        Returns:
            The colour of the shown candidate, None when none is shown.
        """
        from ipycanvas import hold_canvas

        layers, color = mask_layers(
            self.grid,
            self.shown_pixels,
            masks=masks,
            labels=labels,
            chosen=state.chosen,
            palette=palette,
            instances=state.instances,
            picked=state.picked,
        )
        self.overlay.value = overlay_png(self.grid, layers=layers, opacity=opacity)
        tags = instance_tags(
            state.instances, picked=state.picked, scale=self.scale, canvas_size=self.canvas_size
        )
        with hold_canvas():
            if image:
                self.canvas[IMAGE_LAYER].put_image_data(self.shown_pixels, 0, 0)
            mask_layer = self.canvas[MASK_LAYER]
            mask_layer.clear()
            mask_layer.draw_image(self.overlay, 0, 0)
            self.draw_prompts(state.points, state.box)
            if tags:
                draw_instance_tags(self.canvas[PROMPT_LAYER], tags)
        return color

    def draw_prompts(self, points: Sequence[Point], box: Box | None) -> None:
        """Redraw the prompt layer: clicks and a box (or the rubber band of a drag)."""
        draw_prompts(self.canvas[PROMPT_LAYER], points=points, box=box, scale=self.scale)
