"""What the person sees about the widget's state: the status line and which controls act.

Everything here is a pure function of plain data (:mod:`widget.state`), so the
rules "nothing stale after accept, clear or undo" and "nothing clickable while
a request runs" are tested without a browser. :class:`~widget.toolbar.Toolbar`
renders the results; :class:`~widget.sam_widget.SamWidget` decides when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from backend.api.answers import lower_thresholds
from backend.api.errors import SamError
from widget.state import (
    CONCEPT_SCORE,
    PREDICTED_IOU,
    TEXT_SIMILARITY,
    AcceptedMask,
    Candidate,
    ObjectState,
)

StatusKind = Literal["info", "busy", "error"]

SLOW_TEXT_NOTE = "a text prompt ranks every mask segment-everything finds: 10-20 s on a CPU"
RAW_SCORE_TITLES = {
    PREDICTED_IOU: "predicted IoU",
    TEXT_SIMILARITY: "text similarity",
    CONCEPT_SCORE: "SAM 3 score",
}
KEYED_INSTANCES = 9
"""Instances 1..9 can be picked with the number keys."""


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
        instances: Button text per concept instance (``"1: 0.91"``), best first; empty otherwise.
        instance_tooltips: One tooltip per instance button.
        picked: Indices of the pressed instance buttons.
        accept_all: The "accept all" button acts (there are instances).
        concepts: The model answers concepts: the threshold slider is shown.
    """

    candidates: tuple[tuple[str, int], ...]
    tooltips: tuple[str, ...]
    selected: int | None
    accept: bool
    undo: bool
    clear: bool
    prompts: bool
    kept: int
    instances: tuple[str, ...] = ()
    instance_tooltips: tuple[str, ...] = ()
    picked: frozenset[int] = field(default_factory=frozenset)
    accept_all: bool = False
    concepts: bool = False


def candidate_tooltip(index: int, candidate: Candidate) -> str:
    """Hover text of candidate button ``index`` (0-based): shown score, raw score, size, key."""
    raw = RAW_SCORE_TITLES.get(candidate.raw_score_name, candidate.raw_score_name)
    return (
        f"score {candidate.score:.2f} ({raw} {candidate.raw_score:.3f}, stability "
        f"{candidate.stability_score:.2f}), {candidate.area} px; key {index + 1}"
    )


def instance_tooltip(index: int, instance: Candidate) -> str:
    """Hover text of instance button ``index`` (0-based): score, size, how to pick it."""
    key = f"; key {index + 1}" if index < KEYED_INSTANCES else ""
    return (
        f"instance {index + 1}: SAM 3 score {instance.raw_score:.3f}, {instance.area} px; "
        f"press to pick it (accept keeps the picked ones){key}"
    )


def controls_for(
    state: ObjectState, *, can_undo: bool, busy: bool, kept: int, concepts: bool = False
) -> Controls:
    """The toolbar for ``state``: candidate (or instance) buttons of its answer, buttons that can act now.

    Args:
        state: The current object.
        can_undo: There is an earlier state.
        busy: A request runs.
        kept: How many masks were accepted.
        concepts: The model answers concepts (SAM 3).
    """
    ranked = () if state.is_concept else state.candidates
    instances = state.instances
    return Controls(
        candidates=tuple((f"{i + 1}: {c.score:.2f}", i) for i, c in enumerate(ranked)),
        tooltips=tuple(candidate_tooltip(i, c) for i, c in enumerate(ranked)),
        selected=state.selected if ranked else None,
        accept=not busy and (state.chosen is not None or bool(state.picked)),
        undo=not busy and can_undo,
        clear=not busy and state.has_prompt,
        prompts=not busy,
        kept=kept,
        instances=tuple(f"{i + 1}: {c.score:.2f}" for i, c in enumerate(instances)),
        instance_tooltips=tuple(instance_tooltip(i, c) for i, c in enumerate(instances)),
        picked=state.picked,
        accept_all=not busy and bool(instances),
        concepts=concepts or state.is_concept,
    )


def kept_text(count: int) -> str:
    """``"kept: 1 mask"``, ``"kept: 3 masks"``."""
    return f"kept: {count} mask" + ("" if count == 1 else "s")


def threshold_text(threshold: float) -> str:
    """``0.5`` -> ``"0.5"``, ``0.35000000000000003`` -> ``"0.35"``."""
    return f"{round(threshold, 2):g}"


def lower_threshold(threshold: float) -> float:
    """A threshold to suggest when nothing scored above ``threshold``."""
    return max(0.0, round(threshold - 0.2, 2)) if threshold > 0.25 else round(threshold / 2, 2)


def picked_text(state: ObjectState) -> str:
    """``"8 instances, 2 picked (1, 3)"`` for a concept answer."""
    count = len(state.candidates)
    found = f"{count} instance{'' if count == 1 else 's'}"
    if not state.picked:
        return f"{found}, none picked: press their buttons (keys 1-9) to pick them, or accept all"
    numbers = ", ".join(str(i + 1) for i in sorted(state.picked))
    return f"{found}, {len(state.picked)} picked ({numbers}): accept keeps them"


def showing(state: ObjectState) -> str:
    """``"showing 1 of 3: score 0.97"`` for an answered state, a hint otherwise."""
    if state.is_concept and state.candidates:
        return picked_text(state)
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


def instances_found(state: ObjectState, latency_ms: float) -> Status:
    """After a concept answer: how many instances above the threshold, or that none did and what to do."""
    threshold = state.threshold if state.threshold is not None else 0.0
    count = len(state.candidates)
    what = f'"{state.text}"' if state.text else "the exemplar"
    if count == 0:
        return Status(
            f"no instance of {what} scored above the threshold {threshold_text(threshold)} "
            f"(in {latency_ms:.0f} ms) · lower the threshold (the slider, or "
            f"w.threshold = {threshold_text(lower_threshold(threshold))}) and press find again"
        )
    found = f"{count} instance{'' if count == 1 else 's'}"
    return Status(
        f"{found} of {what} (threshold {threshold_text(threshold)}) in {latency_ms:.0f} ms · "
        "press their buttons (keys 1-9) to pick the ones to keep, then accept; or accept all"
    )


def threshold_changed(threshold: float) -> Status:
    """After the threshold slider moved: the shown instances are still the old threshold's."""
    return Status(f"threshold {threshold_text(threshold)}: press find to ask again with it")


def picked(state: ObjectState) -> Status:
    """After an instance was picked or unpicked."""
    return Status(picked_text(state))


def kept_instances(records: Sequence[AcceptedMask], kept: int, left: int) -> Status:
    """After accepting concept instances: how many were kept, how many are left to pick."""
    count = len(records)
    labels = sorted({r.label for r in records})
    named = ", ".join(f'"{label}"' for label in labels)
    then = (
        f"{left} instance{'' if left == 1 else 's'} left: pick more, or accept all"
        if left
        else "click on the next object, or type a word"
    )
    return Status(f"kept {count} instance{'' if count == 1 else 's'} as {named} · {kept_text(kept)} · {then}")


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
    if state.threshold is not None:
        what = f'"{state.text}"' if state.text else "the exemplar"
        return Status(
            f"finding every instance of {what} (threshold {threshold_text(state.threshold)})…{elapsed}",
            "busy",
            progress,
        )
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
    return Status(f"error: {_message(error)}", "error")


def _message(error: BaseException) -> str:
    return error.detail if isinstance(error, SamError) else f"{type(error).__name__}: {error}"


def embedding_failed(error: BaseException) -> Status:
    """The embedding could not be computed; the next click (or ``wait_ready()``) tries again
    when the cause may pass (the server unreachable or busy: not a SamError below 500)."""
    passing = not isinstance(error, SamError) or error.status >= 500
    again = " (the next click tries again)" if passing else ""
    return Status(f"could not compute the embedding: {_message(error)}{again}", "error")


def no_mask_message(
    state: ObjectState, thresholds: dict[str, Any] | None = None, *, model: str | None = None
) -> str:
    """Why an answer can be empty, and what to do, worded for the kind of prompt.

    Args:
        state: The object whose answer was empty.
        thresholds: The segment-everything thresholds a text prompt filtered with (the
            model's ``automask_defaults``), so that the suggested ones are lower.
        model: The widget's model (None: the server's first), named in the suggested call.
    """
    iou, stability = lower_thresholds(thresholds or {})
    chosen = "" if model is None else f", model={model!r}"
    lower = f"w.client.automask(w.image_id{chosen}, pred_iou_thresh={iou:g}, stability_score_thresh={stability:g})"
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
            f"Press Esc (which drops {' and '.join(prompts)} and the text), type the text again and press find, "
            "or lower segment-everything's "
            f"thresholds for this image, e.g. {lower}, then press find again."
        )
    return (
        f'no object matches "{state.text}": a text prompt chooses among the masks segment-everything finds, '
        "and on this image none passed its filters (pred_iou_thresh, stability_score_thresh). "
        f"Lower them for this image, e.g. {lower}, then press find again."
    )
