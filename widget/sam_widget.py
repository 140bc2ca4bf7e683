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

On a model that answers concepts (SAM 3: ``"exemplars"`` among its prompts in
``client.models()``) a typed word finds every instance above a threshold;
each is drawn in its own colour with a numbered tag, listed as a toggle
button, and kept as its own mask ("accept" keeps the picked ones, "accept
all" every one shown). Clicks and boxes, and everything on other models,
give three ranked candidates for one object.

The model is reached only through :class:`backend.client.base.SamClientBase`:
a remote ``SamClient`` or the in-process ``LocalSamClient`` behave alike.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import ipywidgets as widgets
import numpy as np
import traitlets

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, SamError
from backend.client.base import ImageSource, SamClientBase
from backend.formats.images import load_image
from widget import export, feedback
from widget.canvas_view import CanvasView
from widget.drawing import CONTRAST_PALETTE, Color, instance_color, parse_color
from widget.embedding import EmbeddingJob
from widget.events import BoxAction, DragPreview, KeyCommand, PointAction
from widget.feedback import Status
from widget.state import (
    DEFAULT_THRESHOLD,
    AcceptedMask,
    Box,
    Candidate,
    ObjectEditor,
    ObjectState,
    Point,
    check_inside,
)
from widget.ticker import Ticker
from widget.toolbar import Toolbar

T = TypeVar("T")


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
        threshold: Concept threshold in [0, 1] (models that answer concepts):
            a word finds the instances scoring above it.

    Attributes:
        candidates: The current answer's ranked masks (best first), observable;
            for a concept, every instance found (best first).
        selected: Index of the candidate shown and accepted, observable.
        picked: Indices of the concept instances picked to keep, observable and settable.
        threshold: The concept threshold (the toolbar's slider), settable.
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
    picked = traitlets.List(trait=traitlets.Int())
    threshold = traitlets.Float(DEFAULT_THRESHOLD)
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
        palette: Sequence[Sequence[int] | str] | Sequence[int] | str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        if isinstance(labels, str):  # one label, not its letters
            labels = [labels]
        if not labels:
            raise InvalidInput("labels must name at least one label, e.g. labels=['object']")
        if min(max_canvas_size) < 1:
            raise InvalidInput(f"max_canvas_size must be positive (width, height), got {max_canvas_size}")
        _check_threshold(threshold)
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
        self.toolbar = Toolbar(self.labels, opacity=opacity, width=self.view.css_width, threshold=threshold)
        self._lock = threading.RLock()
        self._syncing = False
        self._candidate_color: Color | None = None
        self._concepts: bool | None = None
        super().__init__(
            [self.canvas, self.toolbar.box],
            opacity=opacity,
            palette=_colour_list(palette),
            threshold=threshold,
            layout=widgets.Layout(width=view.css_width, max_width="100%"),
        )
        self._wire()
        self._refresh(feedback.embedding_progress(0.0), image=True)
        self._embedding = self._start_embedding()

    def _start_embedding(self) -> EmbeddingJob:
        """Compute the image's embedding in the background (on the widget's model)."""
        return EmbeddingJob(
            self.client,
            self.pixels,
            model=self.model,
            on_tick=self._embedding_progress,
            on_done=self._embedding_done,
        ).start()

    @traitlets.validate("palette")
    def _parse_palette(self, proposal: dict[str, Any]) -> list[Color]:
        return [parse_color(color) for color in proposal["value"]]

    @traitlets.validate("threshold")
    def _valid_threshold(self, proposal: dict[str, Any]) -> float:
        return _check_threshold(proposal["value"])

    @traitlets.validate("opacity")
    def _valid_opacity(self, proposal: dict[str, Any]) -> float:
        try:
            value = float(proposal["value"])
        except (TypeError, ValueError):
            raise InvalidInput(f"opacity must be a number in [0, 1], got {proposal['value']!r}") from None
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(
                f"opacity must lie in [0, 1] (0: masks hidden, 1: opaque), got {proposal['value']}"
            )
        return value

    # ------------------------------------------------------------ public API
    @property
    def current(self) -> ObjectState:
        """The prompts and answer of the object being edited."""
        return self.editor.current

    @property
    def candidate_color(self) -> Color | None:
        """The colour the shown candidate is drawn in, None when no candidate is shown."""
        return self._candidate_color

    @property
    def instance_colors(self) -> list[Color]:
        """The colour each concept instance is drawn in (its button's stripe too), best first."""
        return [instance_color(i) for i in range(len(self.current.instances))]

    @property
    def answers_concepts(self) -> bool:
        """True when the widget's model finds every instance of a word (SAM 3).

        Asked once from ``client.models()`` (``"exemplars"`` among the
        model's prompts), once the model has loaded; False while that cannot be told.
        """
        if self._concepts is None:
            entry = self._model_entry()
            if entry is None or "prompts" not in entry:  # not loaded yet: its prompts are not known
                return False
            self._concepts = "exemplars" in entry["prompts"]
        return self._concepts

    def _model_entry(self) -> dict[str, Any] | None:
        """The widget's model in ``client.models()``, or None when the server cannot say."""
        try:
            listed = self.client.models()
        except Exception:  # a server that cannot say: ask again later
            return None
        return next((m for m in listed if self.model is None or m.get("name") == self.model), None)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the embedding is computed; re-raise its error if it failed.

        An embedding that failed before (the server was down, or still loading the
        model) is tried again first, as the next click would.
        """
        with self._lock:
            if self.image_id is None and self._embedding.may_retry:
                self._embedding = self._start_embedding()
        self._embedding.wait(timeout)

    def add_point(self, x: float, y: float, *, positive: bool = True) -> None:
        """Add a click at original-image pixel ``(x, y)``; refines the current answer."""
        self._shown(lambda: check_inside(x, y, self.image_size))
        state = self._prompts_for_clicks()
        new = ObjectState(
            points=(*state.points, Point(float(x), float(y), positive)), box=state.box, text=state.text
        )
        self._ask(new, refine_from=state.logits_id)

    def set_box(self, box: Sequence[float] | Box) -> None:
        """Set the box prompt ``[x1, y1, x2, y2]`` (original pixels); keeps the clicks."""

        def checked() -> Box:
            shape = box if isinstance(box, Box) else Box.from_corners(*[float(v) for v in box])
            check_inside(shape.x1, shape.y1, self.image_size)
            check_inside(shape.x2, shape.y2, self.image_size)
            return shape

        box = self._shown(checked)
        state = self._prompts_for_clicks()
        self._ask(ObjectState(points=state.points, box=box, text=state.text), refine_from=None)

    def set_text(self, text: str) -> None:
        """Ask for the object described by ``text`` (with the current box and clicks, if any).

        On a model that answers concepts (SAM 3) this finds every instance
        scoring above :attr:`threshold` instead (the current box, if any, is
        sent as an example; clicks are not). The same text on the same
        prompts (and threshold) as the answer shown asks nothing again.
        """
        text = text.strip()
        if not text:
            raise InvalidInput("the text prompt is empty: type a short description such as 'a dog'")
        if self.toolbar.text.value.strip() != text:  # set from code: the field shows what is asked
            self._syncing = True  # not a new text typed: _on_text must not ask again
            try:
                self.toolbar.text.value = text
            finally:
                self._syncing = False
        state = self.current
        new = self._text_state(text, state)
        if state.text == text and state.candidates and state.threshold == new.threshold:
            return
        self._ask(new, refine_from=None)

    def select(self, index: int) -> None:
        """Show candidate ``index`` (0-based); no server round trip.

        Raises:
            InvalidInput: No such candidate, or the answer is a concept's instances (see :meth:`toggle`).
        """
        with self._lock:
            self.editor.select(index)
            self._refresh(feedback.selected(self.current))

    def toggle(self, index: int) -> None:
        """Pick concept instance ``index`` (0-based) to keep, or unpick it; no server round trip."""
        with self._lock:
            self.editor.toggle(index)
            self._refresh(feedback.picked(self.current))

    def pick(self, indices: Sequence[int]) -> None:
        """Pick exactly the concept instances at ``indices`` (0-based); no server round trip."""
        with self._lock:
            self.editor.pick(indices)
            self._refresh(feedback.picked(self.current))

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
        """Keep the shown candidate with ``label`` (default: the toolbar's) and start the next object.

        On a concept's instances it keeps every picked instance, each as its
        own mask (see :meth:`accept_picked`), and returns the last one kept.
        """
        with self._lock:
            if self.current.is_concept:
                return self.accept_picked(label)[-1]
            chosen = self.current.chosen
            if chosen is None:
                raise InvalidInput("there is no mask to accept yet: click on the object first")
            record = AcceptedMask.from_candidate(chosen, label or self.toolbar.label.value)
            self.editor.reset()
            self.toolbar.text.value = ""
            self._set_masks([*self.masks, record])
            self._refresh(feedback.accepted(record, len(self.masks)))
            return record

    def accept_picked(self, label: str | None = None) -> list[AcceptedMask]:
        """Keep each picked concept instance as its own mask with ``label`` (default: the toolbar's).

        The instances not picked stay shown, to pick or accept next; when none
        is left the next object starts.

        Returns:
            The masks kept, best score first.
        """
        with self._lock:
            state = self.current
            if not state.instances:
                raise InvalidInput("there are no instances to accept: type a word and press find first")
            if not state.picked:
                raise InvalidInput(
                    "no instance is picked: press the buttons of the ones to keep (or keys 1-9), "
                    "or press accept all"
                )
            return self._keep_instances(sorted(state.picked), label)

    def accept_all(self, label: str | None = None) -> list[AcceptedMask]:
        """Keep every concept instance shown, each as its own mask (the shown candidate on other answers)."""
        with self._lock:
            state = self.current
            if not state.is_concept:
                return [self.accept(label)]
            if not state.instances:
                raise InvalidInput("there are no instances to accept: type a word and press find first")
            return self._keep_instances(range(len(state.instances)), label)

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
        tb.accept_all.on_click(lambda _: self._guarded(self.accept_all))
        tb.on_instance(self._on_instance_button)
        tb.undo.on_click(lambda _: self._guarded(self.undo))
        tb.clear.on_click(lambda _: self._guarded(self.clear))
        tb.find.on_click(lambda _: self._guarded(self.set_text, tb.text.value))
        tb.text.observe(self._on_text, "value")
        tb.candidates.observe(self._on_candidate_button, "value")
        traitlets.link((tb.opacity, "value"), (self, "opacity"))
        traitlets.link((tb.threshold, "value"), (self, "threshold"))
        self.observe(self._on_display_change, ["opacity", "masks", "palette"])
        self.observe(self._on_selected, "selected")
        self.observe(self._on_picked, "picked")
        self.observe(self._on_threshold, "threshold")

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
            if self.current.is_concept:
                self.toggle(command.index)
            elif command.index < 3:  # keys 4-9 pick instances only
                self.select(command.index)
        elif command.name == "accept":
            self.accept()
        elif command.name == "accept_all":
            self.accept_all()
        else:
            (self.undo if command.name == "undo" else self.clear)()

    def _shown(self, check: Callable[[], T]) -> T:
        """``check()``, whose :class:`InvalidInput` (a prompt outside the image, say) the status line shows too."""
        try:
            return check()
        except InvalidInput as exc:
            self._refresh(feedback.failed(exc))
            raise

    def _ask(self, state: ObjectState, *, refine_from: str | None) -> None:
        """Send ``state``'s prompts to the model (if the embedding is ready) and show the answer.

        Raises:
            SamError: The request failed or found no mask; the status line shows it too.
        """
        with self._lock:
            if self.image_id is None:
                # one waiting state at a time: its prompts are asked once the embedding is
                # ready (undo then never lands on a state that no answer will reach)
                current = self.current
                if current.has_prompt and not current.candidates:
                    self.editor.replace_current(state)
                else:
                    self.editor.push(state)
                if self._embedding.may_retry:  # the last try failed for a passing reason: try again
                    self._embedding = self._start_embedding()
                failure = self._embedding.failure  # one that trying again would not mend
                self._refresh(
                    feedback.embedding_progress(0.0, pending=True)
                    if failure is None
                    else feedback.embedding_failed(failure)
                )
                return
            try:
                answers, latency_ms = self._predict(state, refine_from=refine_from)
                if not state.is_concept and state.text and answers and answers[0].box is not None:
                    # a concept's instances although the model's prompts were not known: show them all
                    state = ObjectState.concept(state.text, threshold=DEFAULT_THRESHOLD, box=state.box)
                if not state.is_concept and not answers:
                    entry = self._model_entry() if state.text else None
                    thresholds = (entry or {}).get("automask_defaults", {})
                    message = feedback.no_mask_message(state, thresholds, model=self.model)
                    raise InvalidInput(message, code="no_mask")
            except Exception as exc:
                self._refresh(feedback.failed(exc))
                raise
            self.latency_ms = latency_ms
            if state.is_concept:
                self.editor.push(state.with_instances(answers))
                self._label_like(state.text)
                self._refresh(feedback.instances_found(self.current, latency_ms))
            else:
                self.editor.push(state.with_answer(answers[0]))
                self._refresh(feedback.answered(self.current, latency_ms))

    def _predict(self, state: ObjectState, *, refine_from: str | None) -> tuple[list[ObjectMasks], float]:
        """The model's answer (one object, or every instance of a concept) and its wall time in ms.

        Busy meanwhile.
        """
        assert self.image_id is not None
        with self._busy(state):
            start = time.perf_counter()
            try:
                answers = self._ask_server(state, refine_from)
            except SamError as exc:
                if exc.status != 404 or "unknown model" in exc.detail:
                    raise
                # the server lost the image or the answer refined from (a restart, or its cache
                # evicted them): upload the image again and ask with the prompts alone
                chosen = {} if self.model is None else {"model": self.model}
                self.image_id = self.client.add_image(self.pixels, **chosen).image_id
                answers = self._ask_server(state, None)
            latency_ms = (time.perf_counter() - start) * 1000.0
        return list(answers), latency_ms

    def _ask_server(self, state: ObjectState, refine_from: str | None) -> list[ObjectMasks]:
        assert self.image_id is not None
        prompt = state.prompt(refine_from=refine_from)
        return list(self.client.predict(self.image_id, model=self.model, **prompt.fields()))

    def _text_state(self, text: str, state: ObjectState) -> ObjectState:
        """The prompts a typed ``text`` asks with: a concept (and the box as example) on SAM 3,
        else the text with the current box and clicks."""
        if self.image_id is not None and self.answers_concepts:
            return ObjectState.concept(text, threshold=self.threshold, box=state.box)
        return ObjectState(points=state.points, box=state.box, text=text)

    def _prompts_for_clicks(self) -> ObjectState:
        """The prompts a click or box adds to: none after a concept (clicks start a new object)."""
        state = self.current
        return ObjectState() if state.is_concept else state

    def _label_like(self, text: str | None) -> None:
        """Choose the label that matches the typed word (case aside), when there is one."""
        wanted = (text or "").strip().casefold()
        for label in self.labels:
            if label.casefold() == wanted:
                self.toolbar.label.value = label
                return

    def _keep_instances(self, indices: Sequence[int], label: str | None) -> list[AcceptedMask]:
        """Keep the instances at ``indices`` as masks; the others stay shown (or the next object starts)."""
        state = self.current
        name = label or self.toolbar.label.value
        records = [AcceptedMask.from_candidate(state.instances[i], name) for i in indices]
        left = state.without(indices)
        if left.candidates:
            self.editor.restart(left)
        else:
            self.editor.reset()
            self.toolbar.text.value = ""
        self._set_masks([*self.masks, *records])
        self._refresh(feedback.kept_instances(records, len(self.masks), len(left.candidates)))
        return records

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
                self.picked = sorted(state.picked)
            kept = len(self.masks)
            controls = feedback.controls_for(
                state,
                can_undo=self.editor.can_undo,
                busy=self.busy,
                kept=kept,
                concepts=bool(self._concepts),
            )
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
        if change["new"].strip() and not self._syncing:
            self._guarded(self.set_text, change["new"])

    def _on_candidate_button(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and not self._syncing and change["new"] != self.current.selected:
            self._guarded(self.select, int(change["new"]))

    def _on_selected(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            try:
                self.select(int(change["new"]))
            except InvalidInput:
                self._refresh()  # the trait shows the candidate that is shown again
                raise

    def _on_picked(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            try:
                self.pick([int(i) for i in change["new"]])
            except InvalidInput:
                self._refresh()  # the trait shows the picks that hold again
                raise

    def _on_threshold(self, change: dict[str, Any]) -> None:
        state = self.current
        if state.text and (state.is_concept or self._concepts) and not self.busy:
            self._show(feedback.threshold_changed(float(change["new"])))

    def _on_instance_button(self, index: int, pressed: bool) -> None:
        if not self._syncing and (index in self.current.picked) != pressed:
            self._guarded(self.toggle, index)

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
            if self.answers_concepts:  # the model is loaded now: show the threshold
                self._refresh()
            self._show(feedback.embedding_ready(seconds))
            pending = self.current
            if pending.has_prompt and not pending.candidates:  # clicks made while it was computed
                self.editor.undo()
                if pending.text and not pending.points and not pending.is_concept:
                    pending = self._text_state(pending.text, pending)
                self._guarded(lambda: self._ask(pending, refine_from=None))


def _colour_list(palette: Any) -> list[Any]:
    """The palette as a list of colours: one colour (``"#rrggbb"`` or ``(r, g, b)``) is a
    palette of one; None is :data:`~widget.drawing.CONTRAST_PALETTE`."""
    if palette is None or len(palette) == 0:
        return list(CONTRAST_PALETTE)
    one_rgb = (
        not isinstance(palette, str)
        and len(palette) == 3
        and all(isinstance(v, numbers.Integral) for v in palette)
    )
    return [palette] if isinstance(palette, str) or one_rgb else list(palette)


def _check_threshold(value: float) -> float:
    """``value`` as a float when it lies in [0, 1], else :class:`InvalidInput` saying so."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise InvalidInput(f"threshold must lie in [0, 1] (instances scoring above it are kept), got {value}")
    return number


def _default_client() -> SamClientBase:
    """The in-process client with the demo model (imports torch)."""
    from backend.serving.local_client import LocalSamClient

    return LocalSamClient("demo")
