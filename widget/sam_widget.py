"""SamWidget: click, drag and type on an image in a notebook, keep the masks you like.

The image and its layers live in a :class:`~widget.canvas_view.CanvasView`;
browser events become prompts in :mod:`widget.events`; every answer is kept
in an :class:`~widget.state.ObjectEditor` so undo and candidate switches never
ask the model server again.

After every action the traitlets, the toolbar (:mod:`widget.feedback`
decides what it offers) and the canvas are brought in line with the editor in
one place, :meth:`SamWidget._refresh`, so nothing stale stays on screen.
While a request runs the status line says so (with the seconds elapsed) and
the controls are disabled.

The model is reached only through :class:`backend.client.base.SamClientBase`:
a remote ``SamClient`` or the in-process ``LocalSamClient`` behave alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput
from backend.client.base import ImageSource, SamClientBase
from backend.formats.images import load_image
from widget import export, feedback
from widget.canvas_view import CanvasView
from widget.drawing import CONTRAST_PALETTE, Color, parse_color
from widget.embedding import EmbeddingJob
from widget.events import BoxAction, DragPreview, KeyCommand, PointAction
from widget.feedback import Status
from widget.state import AcceptedMask, Box, Candidate, ObjectEditor, ObjectState, Point, check_inside
from widget.ticker import Ticker
from widget.toolbar import Toolbar


class SamWidget(widgets.VBox):
    """Interactive Segment Anything on one image.

    Args:
        image: Path, encoded bytes, PIL image or ``HxWx3`` uint8 RGB array.
        client: Model server client; None starts an in-process
            ``LocalSamClient`` with the demo model (imports torch then).
        labels: Label names offered when accepting a mask.
        model: Which of the server's models answers (``GET /v1/models``;
            default: the server's first), e.g. ``"sam2.1_hiera_t"``.
        max_canvas_size: ``(width, height)`` the canvas may take; larger
            images are shown scaled down (prompts still map to original pixels).
        opacity: Initial overlay opacity, 0..1.
        palette: Colours the shown candidate may take, ``(r, g, b)`` or
            ``"#rrggbb"``; the one farthest from the mean colour under the
            mask is used. One colour fixes it. Default :data:`~widget.drawing.CONTRAST_PALETTE`.

    Attributes:
        candidates: The current answer's ranked masks (best first), observable.
        selected: Index of the candidate shown and accepted, observable.
        masks: Accepted masks (:class:`~widget.state.AcceptedMask`: ``mask``
            HxW bool, ``label``, ``score`` in [0, 1], ``raw_scores``), observable.
        opacity: Overlay opacity.
        palette: The candidate palette (list of ``(r, g, b)``), settable.
        status: The status line's text.
        status_kind: ``"info"``, ``"busy"`` or ``"error"``.
        busy: True while a request to the model runs.
        latency_ms: Wall time of the last model answer (client call), or None.
        image_id: The server's id of the image once its embedding exists.
        view: The :class:`~widget.canvas_view.CanvasView` (canvas, scale, grid, event translator).
        canvas: The three-layer ``ipycanvas.MultiCanvas`` (``view.canvas``).
        overlay: ``ipywidgets.Image`` holding the mask layer's PNG (drawn on layer 1).
        toolbar: The :class:`~widget.toolbar.Toolbar` controls.
    """

    candidates = traitlets.List(trait=traitlets.Instance(Candidate))
    selected = traitlets.Int(0)
    masks = traitlets.List(trait=traitlets.Instance(AcceptedMask))
    opacity = traitlets.Float(0.5)
    palette: traitlets.List[Color] = traitlets.List(minlen=1)
    status = traitlets.Unicode("")
    status_kind = traitlets.Unicode("info")
    busy = traitlets.Bool(False)
    latency_ms = traitlets.Float(None, allow_none=True)
    image_id = traitlets.Unicode(None, allow_none=True)

    def __init__(
        self,
        image: ImageSource,
        client: SamClientBase | None = None,
        *,
        labels: Sequence[str] = ("object",),
        model: str | None = None,
        max_canvas_size: tuple[int, int] = (960, 720),
        opacity: float = 0.5,
        palette: Sequence[Sequence[int] | str] | None = None,
    ) -> None:
        if not labels:
            raise InvalidInput("labels must name at least one label, e.g. labels=['object']")
        if min(max_canvas_size) < 1:
            raise InvalidInput(f"max_canvas_size must be positive (width, height), got {max_canvas_size}")
        self.pixels = load_image(image)
        self.client = client if client is not None else _default_client()
        self.labels = list(labels)
        self.model = model
        self.view = view = CanvasView(
            self.pixels, max_canvas_size=max_canvas_size, on_event=self.handle_event
        )
        self.canvas, self.overlay = view.canvas, view.overlay
        self.image_size, self.scale, self.canvas_size = view.image_size, view.scale, view.canvas_size
        self.editor = ObjectEditor()
        self.toolbar = Toolbar(self.labels, opacity=opacity, width=self.view.css_width)
        self._lock = threading.RLock()
        self._syncing = False
        self._candidate_color: Color | None = None
        super().__init__(
            [self.canvas, self.toolbar.box],
            opacity=opacity,
            palette=list(palette or CONTRAST_PALETTE),
            layout=widgets.Layout(width=view.css_width, max_width="100%"),
        )
        self._wire()
        self._refresh(feedback.embedding_progress(0.0), image=True)
        self._embedding = EmbeddingJob(
            self.client,
            self.pixels,
            model=model,
            on_tick=self._embedding_progress,
            on_done=self._embedding_done,
        ).start()

    @traitlets.validate("palette")
    def _parse_palette(self, proposal: dict[str, Any]) -> list[Color]:
        return [parse_color(color) for color in proposal["value"]]

    # ------------------------------------------------------------ public API
    @property
    def current(self) -> ObjectState:
        """The prompts and answer of the object being edited."""
        return self.editor.current

    @property
    def candidate_color(self) -> Color | None:
        """The colour the shown candidate is drawn in, None when no candidate is shown."""
        return self._candidate_color

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the embedding is computed; re-raise its error if it failed."""
        self._embedding.wait(timeout)

    def add_point(self, x: float, y: float, *, positive: bool = True) -> None:
        """Add a click at original-image pixel ``(x, y)``; refines the current answer."""
        check_inside(x, y, self.image_size)
        state = self.current
        new = ObjectState(
            points=(*state.points, Point(float(x), float(y), positive)), box=state.box, text=state.text
        )
        self._ask(new, refine_from=state.logits_id)

    def set_box(self, box: Sequence[float] | Box) -> None:
        """Set the box prompt ``[x1, y1, x2, y2]`` (original pixels); keeps the clicks."""
        box = box if isinstance(box, Box) else Box.from_corners(*[float(v) for v in box])
        check_inside(box.x1, box.y1, self.image_size)
        check_inside(box.x2, box.y2, self.image_size)
        state = self.current
        self._ask(ObjectState(points=state.points, box=box, text=state.text), refine_from=None)

    def set_text(self, text: str) -> None:
        """Ask for the object described by ``text`` (with the current box and clicks, if any).

        The same text on the same prompts as the answer shown asks nothing again.
        """
        text = text.strip()
        if not text:
            raise InvalidInput("the text prompt is empty: type a short description such as 'a dog'")
        state = self.current
        if state.text == text and state.candidates:
            return
        self._ask(ObjectState(points=state.points, box=state.box, text=text), refine_from=None)

    def select(self, index: int) -> None:
        """Show candidate ``index`` (0-based); no server round trip."""
        with self._lock:
            self.editor.select(index)
            self._refresh(feedback.selected(self.current))

    def undo(self) -> None:
        """Go back to the previous prompt and its answer; no server round trip."""
        with self._lock:
            if self.editor.undo():
                self._refresh(feedback.undone(self.current))
            else:
                self._refresh(feedback.nothing_to_undo(self.current))

    def clear(self) -> None:
        """Forget the prompts and candidates of the current object."""
        with self._lock:
            self.editor.reset()
            self.toolbar.text.value = ""
            self._refresh(feedback.cleared())

    def accept(self, label: str | None = None) -> AcceptedMask:
        """Keep the shown candidate with ``label`` (default: the toolbar's) and start the next object."""
        with self._lock:
            chosen = self.current.chosen
            if chosen is None:
                raise InvalidInput("there is no mask to accept yet: click on the object first")
            record = AcceptedMask.from_candidate(chosen, label or self.toolbar.label.value)
            self.editor.reset()
            self.toolbar.text.value = ""
            self._set_masks([*self.masks, record])
            self._refresh(feedback.accepted(record, len(self.masks)))
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
        loaded = export.load_masks(source, label=label, image_size=self.image_size)
        with self._lock:
            self._set_masks(loaded if replace_existing else [*self.masks, *loaded])
            self._refresh(feedback.loaded(len(loaded), len(self.masks)))

    def to_coco(self, *, file_name: str = "", image_id: int = 1) -> dict[str, Any]:
        """COCO dict (images, annotations with pycocotools RLE, categories) of the accepted masks.

        Each annotation's ``score`` lies in [0, 1]; the raw model score is kept
        under ``predicted_iou`` (or ``text_similarity`` for text prompts).
        """
        return export.to_coco(
            self.masks, labels=self.labels, image_size=self.image_size, image_id=image_id, file_name=file_name
        )

    def save_png(self, path: str | Path) -> Path:
        """Write the accepted masks as an instance PNG (0 background, i = i-th mask), atomically."""
        return export.save_png(path, self.masks, self.image_size)

    # ---------------------------------------------------------- event entry
    def handle_event(self, event: dict[str, Any]) -> None:
        """Act on one ipyevents message (mouse or key); errors go to the status line."""
        self._guarded(self._act, event)

    def re_draw(self, *, image: bool = False) -> None:
        """Redraw the mask and prompt layers (and the image layer if ``image``) in one message."""
        self._candidate_color = self.view.draw(
            self.current,
            masks=self.masks,
            labels=self.labels,
            palette=self.palette,
            opacity=self.opacity,
            image=image,
        )

    # ---------------------------------------------------------------- inner
    def _wire(self) -> None:
        tb = self.toolbar
        self.view.on_client_ready(lambda: self.re_draw(image=True))
        tb.accept.on_click(lambda _: self._guarded(self.accept))
        tb.undo.on_click(lambda _: self._guarded(self.undo))
        tb.clear.on_click(lambda _: self._guarded(self.clear))
        tb.find.on_click(lambda _: self._guarded(self.set_text, tb.text.value))
        tb.text.observe(self._on_text, "value")
        tb.candidates.observe(self._on_candidate_button, "value")
        traitlets.link((tb.opacity, "value"), (self, "opacity"))
        self.observe(self._on_display_change, ["opacity", "masks", "palette"])
        self.observe(self._on_selected, "selected")

    def _act(self, event: dict[str, Any]) -> None:
        """Turn one browser event into a prompt, a rubber band or a command."""
        action = self.view.translator.handle(event)
        if isinstance(action, PointAction):
            self.add_point(action.point.x, action.point.y, positive=action.point.positive)
        elif isinstance(action, BoxAction):
            self.set_box(action.box)
        elif isinstance(action, DragPreview):
            self.view.draw_prompts(self.current.points, action.box)
        elif isinstance(action, KeyCommand):
            self._key(action)

    def _guarded(self, action: Callable[..., Any], *args: Any) -> bool:
        """Run a user action; show any error in full on the status line. True when it succeeded."""
        try:
            action(*args)
        except Exception as exc:  # the person reads it; the kernel must keep serving events
            self._show(feedback.failed(exc))
            return False
        return True

    def _key(self, command: KeyCommand) -> None:
        if command.name == "select":
            self.select(command.index)
        elif command.name == "accept":
            self.accept()
        else:
            (self.undo if command.name == "undo" else self.clear)()

    def _ask(self, state: ObjectState, *, refine_from: str | None) -> None:
        """Send ``state``'s prompts to the model (if the embedding is ready) and show the answer.

        Raises:
            SamError: The request failed or found no mask; the status line shows it too.
        """
        with self._lock:
            if self.image_id is None:
                self.editor.push(state)
                error = self._embedding.error
                self._refresh(
                    feedback.embedding_progress(0.0, pending=True)
                    if error is None
                    else feedback.failed(error)
                )
                return
            try:
                answer, latency_ms = self._predict(state, refine_from=refine_from)
            except Exception as exc:
                self._refresh(feedback.failed(exc))
                raise
            self.latency_ms = latency_ms
            self.editor.push(state.with_answer(answer))
            self._refresh(feedback.answered(self.current, latency_ms))

    def _predict(self, state: ObjectState, *, refine_from: str | None) -> tuple[ObjectMasks, float]:
        """The best object of the model's answer and the request's wall time in ms (busy meanwhile)."""
        assert self.image_id is not None
        with self._busy(state):
            start = time.perf_counter()
            prompt = state.prompt(refine_from=refine_from)
            answers = self.client.predict(self.image_id, model=self.model, **prompt.fields())
            latency_ms = (time.perf_counter() - start) * 1000.0
        if not answers:
            raise InvalidInput(feedback.no_mask_message(state), code="no_mask")
        return answers[0], latency_ms

    @contextmanager
    def _busy(self, state: ObjectState) -> Iterator[None]:
        """While the block runs: busy, controls disabled, the pending prompts drawn, a ticking status."""
        self.busy = True
        try:
            self._refresh(feedback.busy(state, None), shown=state)
            with Ticker(lambda seconds: self.toolbar.show_status(feedback.busy(state, seconds))):
                yield
        finally:
            self.busy = False

    def _refresh(
        self, status: Status | None = None, *, shown: ObjectState | None = None, image: bool = False
    ) -> None:
        """Mirror the editor onto the canvas, the traitlets and the toolbar, then show ``status``.

        The canvas goes first, so observers of ``candidates`` already see the
        new :attr:`candidate_color`.

        Args:
            status: The new status line (None keeps it).
            shown: Prompts to draw instead of the current ones (a request in flight).
            image: Redraw the image layer too.
        """
        state = self.current
        if shown is None:
            self.re_draw(image=image)
        else:
            self.view.draw_prompts(shown.points, shown.box)
        self._syncing = True
        try:
            with self.hold_trait_notifications():
                self.candidates = list(state.candidates)
                self.selected = state.selected
            kept = len(self.masks)
            controls = feedback.controls_for(state, can_undo=self.editor.can_undo, busy=self.busy, kept=kept)
            self.toolbar.show_controls(controls)
        finally:
            self._syncing = False
        if status is not None:
            self._show(status)

    def _show(self, status: Status) -> None:
        """Put ``status`` on the traitlets and the toolbar."""
        with self.hold_trait_notifications():
            self.status_kind = status.kind
            self.status = status.text
        self.toolbar.show_status(status)

    def _set_masks(self, masks: list[AcceptedMask]) -> None:
        """Replace the accepted masks without a second redraw (the caller refreshes)."""
        self._syncing = True
        try:
            self.masks = masks
        finally:
            self._syncing = False

    def _on_text(self, change: dict[str, Any]) -> None:
        """Enter (or leaving the field) with a new text: a text prompt; the text stays in the field."""
        if change["new"].strip():
            self._guarded(self.set_text, change["new"])

    def _on_candidate_button(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and not self._syncing and change["new"] != self.current.selected:
            self._guarded(self.select, int(change["new"]))

    def _on_selected(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.select(int(change["new"]))

    def _on_display_change(self, _: dict[str, Any]) -> None:
        if not self._syncing:
            self._refresh()

    # ------------------------------------------------------------ embedding
    def _embedding_progress(self, seconds: float) -> None:
        self.toolbar.show_status(feedback.embedding_progress(seconds, pending=self.current.has_prompt))

    def _embedding_done(self, info: ImageInfo | None, error: BaseException | None, seconds: float) -> None:
        if info is None:
            self._show(feedback.embedding_failed(error or RuntimeError("no image info")))
            return
        with self._lock:
            self.image_id = info.image_id
            self._show(feedback.embedding_ready(seconds))
            pending = self.current
            if pending.has_prompt and not pending.candidates:  # clicks made while it was computed
                self.editor.undo()
                self._guarded(lambda: self._ask(pending, refine_from=None))


def _default_client() -> SamClientBase:
    """The in-process client with the demo model (imports torch)."""
    from backend.serving.local_client import LocalSamClient

    return LocalSamClient("demo")
