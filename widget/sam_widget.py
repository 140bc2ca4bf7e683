"""SamWidget: click, drag and type on an image in a notebook, keep the masks you like.

Layers of the :class:`ipycanvas.MultiCanvas`: 0 the image (scaled to fit),
1 the masks (accepted ones in their label colours, the shown candidate on
top), 2 the prompts (clicks, box, rubber band). Browser events arrive through
ipyevents (it knows the mouse button and the modifier keys) and become
prompts in :mod:`widget.events`; every answer is kept in an
:class:`~widget.state.ObjectEditor` so undo and candidate switches never ask
the model server again.

The model is reached only through :class:`backend.client.base.SamClientBase`:
a remote ``SamClient`` or the in-process ``LocalSamClient`` behave alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from backend.client.base import ImageInfo, ImageSource, SamClientBase
from backend.errors import InvalidInput, SamError
from backend.formats.coordinates import fit_scale
from backend.formats.images import load_image
from widget import export
from widget.drawing import (
    CANDIDATE_COLOR,
    CanvasGrid,
    canvas_size_for,
    draw_prompts,
    label_color,
    overlay_png,
    scaled_image,
)
from widget.embedding import EmbeddingJob
from widget.events import BoxAction, DragPreview, EventTranslator, KeyCommand, PointAction
from widget.state import AcceptedMask, Box, Candidate, ObjectEditor, ObjectState, Point
from widget.toolbar import Toolbar

IMAGE_LAYER, MASK_LAYER, PROMPT_LAYER = 0, 1, 2
MASK_EVENTS = ["mousedown", "mouseup", "mouseleave", "contextmenu", "keydown"]


class SamWidget(widgets.VBox):
    """Interactive Segment Anything on one image.

    Args:
        image: Path, encoded bytes, PIL image or ``HxWx3`` uint8 RGB array.
        client: Model server client; None starts an in-process
            ``LocalSamClient`` with the demo model (imports torch then).
        labels: Label names offered when accepting a mask.
        max_canvas_size: ``(width, height)`` the canvas may take; larger
            images are shown scaled down (prompts still map to original pixels).
        opacity: Initial overlay opacity, 0..1.

    Attributes:
        candidates: The current answer's ranked masks (best first), observable.
        selected: Index of the candidate shown and accepted, observable.
        masks: Accepted masks (:class:`~widget.state.AcceptedMask`: ``mask``
            HxW bool, ``label``, ``score``), observable.
        opacity: Overlay opacity.
        status: The status line's text.
        latency_ms: Wall time of the last model answer (client call), or None.
        image_id: The server's id of the image once its embedding exists.
        canvas: The three-layer ``ipycanvas.MultiCanvas``.
        overlay: ``ipywidgets.Image`` holding the mask layer's PNG (drawn on layer 1).
        toolbar: The :class:`~widget.toolbar.Toolbar` controls.
    """

    candidates = traitlets.List(trait=traitlets.Instance(Candidate))
    selected = traitlets.Int(0)
    masks = traitlets.List(trait=traitlets.Instance(AcceptedMask))
    opacity = traitlets.Float(0.5)
    status = traitlets.Unicode("")
    latency_ms = traitlets.Float(None, allow_none=True)
    image_id = traitlets.Unicode(None, allow_none=True)

    def __init__(
        self,
        image: ImageSource,
        client: SamClientBase | None = None,
        *,
        labels: Sequence[str] = ("object",),
        max_canvas_size: tuple[int, int] = (960, 720),
        opacity: float = 0.5,
    ) -> None:
        from ipycanvas import MultiCanvas
        from ipyevents import Event

        if not labels:
            raise InvalidInput("labels must name at least one label, e.g. labels=['object']")
        if min(max_canvas_size) < 1:
            raise InvalidInput(f"max_canvas_size must be positive (width, height), got {max_canvas_size}")
        self.pixels = load_image(image)
        self.client = client if client is not None else _default_client()
        self.labels = list(labels)
        self.image_size = (int(self.pixels.shape[1]), int(self.pixels.shape[0]))
        self.scale = fit_scale(*self.image_size, *max_canvas_size)
        self.canvas_size = canvas_size_for(self.image_size, self.scale)
        self.grid = CanvasGrid.build(
            scale=self.scale, canvas_size=self.canvas_size, image_size=self.image_size
        )
        self.editor = ObjectEditor()
        self.translator = EventTranslator(
            scale=self.scale, canvas_size=self.canvas_size, image_size=self.image_size
        )
        self._lock = threading.RLock()
        self._syncing = False

        self.canvas = MultiCanvas(
            3,
            width=self.canvas_size[0],
            height=self.canvas_size[1],
            layout=widgets.Layout(width=f"{self.canvas_size[0]}px", max_width="100%", height="auto"),
        )
        self.overlay = widgets.Image(format="png")
        self.toolbar = Toolbar(self.labels, opacity=opacity)
        self._mouse = Event(source=self.canvas, watched_events=MASK_EVENTS, prevent_default_action=True)
        self._moves = Event(
            source=self.canvas, watched_events=["mousemove"], throttle_or_debounce="throttle", wait=40
        )
        super().__init__([self.canvas, self.toolbar.box], opacity=opacity)
        self._wire()
        self.re_draw(image=True)
        self._embedding = EmbeddingJob(
            self.client, self.pixels, on_tick=self._embedding_progress, on_done=self._embedding_done
        ).start()

    # ------------------------------------------------------------ public API
    @property
    def current(self) -> ObjectState:
        """The prompts and answer of the object being edited."""
        return self.editor.current

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the embedding is computed; re-raise its error if it failed."""
        self._embedding.wait(timeout)

    def add_point(self, x: float, y: float, *, positive: bool = True) -> None:
        """Add a click at original-image pixel ``(x, y)``; refines the current answer."""
        self._check_inside(x, y)
        state = self.current
        new = ObjectState(
            points=(*state.points, Point(float(x), float(y), positive)), box=state.box, text=state.text
        )
        self._ask(new, refine_from=state.logits_id)

    def set_box(self, box: Sequence[float] | Box) -> None:
        """Set the box prompt ``[x1, y1, x2, y2]`` (original pixels); keeps the clicks."""
        box = box if isinstance(box, Box) else Box.from_corners(*[float(v) for v in box])
        self._check_inside(box.x1, box.y1)
        self._check_inside(box.x2, box.y2)
        state = self.current
        self._ask(ObjectState(points=state.points, box=box, text=state.text), refine_from=None)

    def set_text(self, text: str) -> None:
        """Ask for the object described by ``text`` (with the current box and clicks, if any)."""
        text = text.strip()
        if not text:
            raise InvalidInput("the text prompt is empty: type a short description such as 'a dog'")
        state = self.current
        self._ask(ObjectState(points=state.points, box=state.box, text=text), refine_from=None)

    def select(self, index: int) -> None:
        """Show candidate ``index`` (0-based); no server round trip."""
        with self._lock:
            self.editor.select(index)
            self._sync()

    def undo(self) -> None:
        """Go back to the previous prompt and its answer; no server round trip."""
        with self._lock:
            if not self.editor.undo():
                self.status = "nothing to undo"
            self._sync()

    def clear(self) -> None:
        """Forget the prompts and candidates of the current object."""
        with self._lock:
            self.editor.reset()
            self._sync()

    def accept(self, label: str | None = None) -> AcceptedMask:
        """Keep the shown candidate with ``label`` (default: the toolbar's) and start the next object."""
        with self._lock:
            chosen = self.current.chosen
            if chosen is None:
                raise InvalidInput("there is no mask to accept yet: click on the object first")
            record = AcceptedMask(
                mask=chosen.mask, label=label or self.toolbar.label.value, score=chosen.score
            )
            self.editor.reset()
            self._syncing = True
            try:
                self.masks = [*self.masks, record]
            finally:
                self._syncing = False
            self._sync()
            return record

    def load_masks(
        self,
        source: Sequence[np.ndarray] | dict[str, Any] | str | Path,
        *,
        label: str = "object",
        replace_existing: bool = False,
    ) -> None:
        """Add existing masks to continue editing.

        Args:
            source: A list of ``HxW`` bool arrays; a COCO dict from :meth:`to_coco`;
                or the path of a PNG from :meth:`save_png`.
            label: Label of masks that carry none (arrays and PNG).
            replace_existing: Drop the masks accepted so far first.
        """
        if isinstance(source, (str, Path)):
            loaded = export.load_png(source, label=label, image_size=self.image_size)
        elif isinstance(source, dict):
            loaded = export.from_coco(source, image_size=self.image_size)
        else:
            loaded = []
            for mask in source:
                array = np.asarray(mask).astype(bool)
                export.check_mask_shape(array, self.image_size)
                loaded.append(AcceptedMask(mask=array, label=label, score=1.0))
        with self._lock:
            self.masks = loaded if replace_existing else [*self.masks, *loaded]

    def to_coco(self, *, file_name: str = "", image_id: int = 1) -> dict[str, Any]:
        """COCO dict (images, annotations with pycocotools RLE, categories) of the accepted masks."""
        return export.to_coco(
            self.masks, labels=self.labels, image_size=self.image_size, image_id=image_id, file_name=file_name
        )

    def save_png(self, path: str | Path) -> Path:
        """Write the accepted masks as an instance PNG (0 background, i = i-th mask), atomically."""
        return export.save_png(path, self.masks, self.image_size)

    # ---------------------------------------------------------- event entry
    def handle_event(self, event: dict[str, Any]) -> None:
        """Act on one ipyevents message (mouse or key)."""
        try:
            action = self.translator.handle(event)
            if isinstance(action, PointAction):
                self.add_point(action.point.x, action.point.y, positive=action.point.positive)
            elif isinstance(action, BoxAction):
                self.set_box(action.box)
            elif isinstance(action, DragPreview):
                draw_prompts(
                    self.canvas[PROMPT_LAYER], points=self.current.points, box=action.box, scale=self.scale
                )
            elif isinstance(action, KeyCommand):
                self._key(action)
        except SamError as exc:
            self.status = f"error: {exc}"

    def re_draw(self, *, image: bool = False) -> None:
        """Redraw the mask and prompt layers (and the image layer if ``image``) in one message."""
        from ipycanvas import hold_canvas

        state = self.current
        label_index = {name: i for i, name in enumerate(self.labels)}
        layers = [(m.mask, label_color(label_index.get(m.label, len(self.labels)))) for m in self.masks]
        if state.chosen is not None:
            layers.append((state.chosen.mask, CANDIDATE_COLOR))
        self.overlay.value = overlay_png(self.grid, layers=layers, opacity=self.opacity)
        with hold_canvas():
            if image:
                self.canvas[IMAGE_LAYER].put_image_data(scaled_image(self.pixels, self.canvas_size), 0, 0)
            mask_layer = self.canvas[MASK_LAYER]
            mask_layer.clear()
            mask_layer.draw_image(self.overlay, 0, 0)
            draw_prompts(self.canvas[PROMPT_LAYER], points=state.points, box=state.box, scale=self.scale)

    # ---------------------------------------------------------------- inner
    def _wire(self) -> None:
        tb = self.toolbar
        self._mouse.on_dom_event(self.handle_event)
        self._moves.on_dom_event(self.handle_event)
        self.canvas.on_client_ready(lambda: self.re_draw(image=True))
        tb.accept.on_click(lambda _: self._guarded(self.accept))
        tb.undo.on_click(lambda _: self.undo())
        tb.clear.on_click(lambda _: self.clear())
        tb.text.observe(self._on_text, "value")
        tb.candidates.observe(self._on_candidate_button, "value")
        traitlets.link((tb.opacity, "value"), (self, "opacity"))
        self.observe(self._on_status, "status")
        self.observe(self._on_display_change, ["opacity", "masks"])
        self.observe(self._on_selected, "selected")

    def _guarded(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except SamError as exc:
            self.status = f"error: {exc}"

    def _key(self, command: KeyCommand) -> None:
        if command.name == "undo":
            self.undo()
        elif command.name == "select":
            self.select(command.index)
        elif command.name == "accept":
            self.accept()
        elif command.name == "clear":
            self.clear()

    def _ask(self, state: ObjectState, *, refine_from: str | None) -> None:
        """Send ``state``'s prompts to the model (if the embedding is ready) and show the answer."""
        with self._lock:
            if self.image_id is None:
                self.editor.push(state)
                self._sync()
                if self._embedding.error is None:
                    self.status = "computing embedding… the prompt will be sent when it is ready"
                return
            start = time.perf_counter()
            answers = self.client.predict(self.image_id, **state.predict_kwargs(refine_from=refine_from))
            self.latency_ms = (time.perf_counter() - start) * 1000.0
            if not answers:
                raise InvalidInput("the model returned no mask for this prompt: try another click")
            self.editor.push(state.with_answer(answers[0]))
            self._sync()
            best = answers[0]
            self.status = f"answer in {self.latency_ms:.0f} ms · best score {float(best.scores[0]):.2f}"

    def _sync(self) -> None:
        """Mirror the editor into the traitlets and toolbar, then redraw once."""
        state = self.current
        self._syncing = True
        try:
            with self.hold_trait_notifications():
                self.candidates = list(state.candidates)
                self.selected = state.selected
            self.toolbar.show_candidates(state.candidates, state.selected)
        finally:
            self._syncing = False
        self.re_draw()

    def _on_text(self, change: dict[str, Any]) -> None:
        if change["new"].strip():
            self._guarded(self.set_text, change["new"])
            self.toolbar.text.value = ""  # ready for the next description

    def _on_candidate_button(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and not self._syncing and change["new"] != self.current.selected:
            self.select(int(change["new"]))

    def _on_selected(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.select(int(change["new"]))

    def _on_display_change(self, _: dict[str, Any]) -> None:
        if not self._syncing:
            self.re_draw()

    def _on_status(self, change: dict[str, Any]) -> None:
        self.toolbar.show_status(change["new"])

    def _check_inside(self, x: float, y: float) -> None:
        width, height = self.image_size
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(f"({x}, {y}) is outside the {width}x{height} image: use original-image pixels")

    # ------------------------------------------------------------ embedding
    def _embedding_progress(self, seconds: float) -> None:
        self.toolbar.show_status(f"computing embedding… {seconds:.1f} s", progress=(seconds % 2.0) / 2.0)

    def _embedding_done(self, info: ImageInfo | None, error: BaseException | None, seconds: float) -> None:
        if info is None:
            self.status = f"error: could not compute the embedding: {error}"
            return
        with self._lock:
            self.image_id = info.image_id
            self.status = f"embedding ready in {seconds:.1f} s: click on an object"
            pending = self.current
            if pending.has_prompt and not pending.candidates:  # clicks made while it was computed
                self.editor.undo()
                self._guarded(lambda: self._ask(pending, refine_from=None))


def _default_client() -> SamClientBase:
    """The in-process client with the demo model (imports torch)."""
    from backend.client.local_client import LocalSamClient

    return LocalSamClient("demo")
