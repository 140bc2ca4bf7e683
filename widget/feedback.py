"""What the person sees about the widget's state: the status line and which controls act.

Everything here is a pure function of plain data (:mod:`widget.state`), so the
rules "nothing stale after accept, clear or undo" and "nothing clickable while
a request runs" are tested without a browser. :class:`~widget.toolbar.Toolbar`
renders the results; :class:`~widget.sam_widget.SamWidget` decides when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backend.api.errors import SamError
from widget.state import PREDICTED_IOU, AcceptedMask, Candidate, ObjectState

StatusKind = Literal["info", "busy", "error"]

SLOW_TEXT_NOTE = "a text prompt ranks every mask segment-everything finds: 10-20 s on a CPU"
LOWER_THRESHOLDS = "w.client.automask(w.image_id, pred_iou_thresh=0.6, stability_score_thresh=0.85)"


@dataclass(frozen=True)
class Status:
    """One status line.

    Attributes:
        text: The full message (never cut: the toolbar wraps it).
        kind: ``"info"``, ``"busy"`` (a request or the embedding runs) or ``"error"``.
        progress: 0..1 position of the moving bar while busy, None to hide it.
    """

    text: str
    kind: StatusKind = "info"
    progress: float | None = None


@dataclass(frozen=True)
class Controls:
    """What the toolbar offers for one state.

    Attributes:
        candidates: ``(button text, index)`` per candidate, best first.
        tooltips: One tooltip per candidate button.
        selected: Index of the pressed candidate button, None when there is none.
        accept: The accept button acts (there is a mask to keep).
        undo: The undo button acts (there is an earlier prompt).
        clear: The clear button acts (there are prompts to forget).
        prompts: The text field, "find" and the candidate buttons take input (no request runs;
            canvas events that arrive meanwhile wait in the kernel's queue).
        kept: How many masks were accepted.
    """

    candidates: tuple[tuple[str, int], ...]
    tooltips: tuple[str, ...]
    selected: int | None
    accept: bool
    undo: bool
    clear: bool
    prompts: bool
    kept: int


def candidate_tooltip(index: int, candidate: Candidate) -> str:
    """Hover text of candidate button ``index`` (0-based): shown score, raw score, size, key."""
    raw = "predicted IoU" if candidate.raw_score_name == PREDICTED_IOU else "text similarity"
    return (
        f"score {candidate.score:.2f} ({raw} {candidate.raw_score:.3f}, stability "
        f"{candidate.stability_score:.2f}), {candidate.area} px; key {index + 1}"
    )


def controls_for(state: ObjectState, *, can_undo: bool, busy: bool, kept: int) -> Controls:
    """The toolbar for ``state``: candidate buttons of its answer, buttons that can act now."""
    return Controls(
        candidates=tuple((f"{i + 1}: {c.score:.2f}", i) for i, c in enumerate(state.candidates)),
        tooltips=tuple(candidate_tooltip(i, c) for i, c in enumerate(state.candidates)),
        selected=state.selected if state.candidates else None,
        accept=not busy and state.chosen is not None,
        undo=not busy and can_undo,
        clear=not busy and state.has_prompt,
        prompts=not busy,
        kept=kept,
    )


def kept_text(count: int) -> str:
    """``"kept: 1 mask"``, ``"kept: 3 masks"``."""
    return f"kept: {count} mask" + ("" if count == 1 else "s")


def showing(state: ObjectState) -> str:
    """``"showing 1 of 3: score 0.97"`` for an answered state, a hint otherwise."""
    chosen = state.chosen
    if chosen is None:
        if state.has_prompt:
            return "waiting for the answer to these prompts"
        return "click on an object (the legend lists every gesture)"
    return f"showing {state.selected + 1} of {len(state.candidates)}: score {chosen.score:.2f}"


def answered(state: ObjectState, latency_ms: float) -> Status:
    """After a model answer: how long it took and which candidate is shown."""
    found = "masks" if len(state.candidates) != 1 else "mask"
    subject = f' for "{state.text}"' if state.text else ""
    return Status(f"{len(state.candidates)} {found}{subject} in {latency_ms:.0f} ms · {showing(state)}")


def selected(state: ObjectState) -> Status:
    """After a candidate switch."""
    return Status(showing(state))


def undone(state: ObjectState) -> Status:
    """After an undo step: what is shown now."""
    return Status(f"undone · {showing(state)}")


def nothing_to_undo(state: ObjectState) -> Status:
    """Undo with no earlier state."""
    return Status(f"nothing to undo · {showing(state)}")


def cleared() -> Status:
    """After clear (Esc)."""
    return Status("cleared · click on an object")


def accepted(record: AcceptedMask, kept: int) -> Status:
    """After accept: what was kept and how many are kept now."""
    return Status(
        f'kept "{record.label}" (score {record.score:.2f}) · {kept_text(kept)} · click on the next object'
    )


def loaded(count: int, kept: int) -> Status:
    """After :meth:`SamWidget.load_masks`."""
    return Status(f"loaded {count} mask{'' if count == 1 else 's'} · {kept_text(kept)}")


def busy(state: ObjectState, seconds: float | None) -> Status:
    """While a request runs: what is asked and for how long so far (None: it just started)."""
    elapsed = "" if seconds is None else f" {seconds:.1f} s"
    progress = 0.0 if seconds is None else (seconds % 2.0) / 2.0
    if state.text:
        return Status(f'finding "{state.text}"…{elapsed} ({SLOW_TEXT_NOTE})', "busy", progress)
    return Status(f"segmenting…{elapsed}", "busy", progress)


def embedding_progress(seconds: float, *, pending: bool = False) -> Status:
    """While the embedding is computed; ``pending``: a prompt waits for it."""
    waiting = " · your prompt is sent when it is ready" if pending else ""
    return Status(f"computing embedding… {seconds:.1f} s{waiting}", "busy", (seconds % 2.0) / 2.0)


def embedding_ready(seconds: float) -> Status:
    """The embedding exists."""
    return Status(f"embedding ready in {seconds:.1f} s · click on an object")


def failed(error: BaseException) -> Status:
    """An error, in full: the server's message (its ``detail``) says what to change."""
    if isinstance(error, SamError):
        return Status(f"error: {error.detail}", "error")
    return Status(f"error: {type(error).__name__}: {error}", "error")


def embedding_failed(error: BaseException) -> Status:
    """The embedding could not be computed: nothing can be segmented until that is fixed."""
    return Status(f"could not compute the embedding: {failed(error).text}", "error")


def no_mask_message(state: ObjectState) -> str:
    """Why an answer can be empty, and what to do, worded for the kind of prompt."""
    if not state.text:
        return "the model returned no mask for this prompt: try another click or box"
    where, prompts = [], []
    if state.box is not None:
        where.append("inside the box")
        prompts.append("the box")
    if state.points:
        where.append("that agrees with the clicks")
        prompts.append("the clicks")
    if where:
        return (
            f'no object matches "{state.text}": segment-everything found no mask {" and ".join(where)}. '
            f"Press Esc to drop {' and '.join(prompts)} and try the text alone, or lower segment-everything's "
            f"thresholds for this image, e.g. {LOWER_THRESHOLDS}, then press find again."
        )
    return (
        f'no object matches "{state.text}": a text prompt chooses among the masks segment-everything finds, '
        "and on this image none passed its filters (pred_iou_thresh, stability_score_thresh). "
        f"Lower them for this image, e.g. {LOWER_THRESHOLDS}, then press find again."
    )
