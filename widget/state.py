"""What the widget knows about the object being segmented, as plain data.

Shapes are frozen dataclasses in original-image pixels (``(x, y)``, origin
top-left). :class:`ObjectEditor` keeps one :class:`ObjectState` per user
action, so undo restores an earlier answer exactly, without asking the model
server again. Nothing here knows about ipywidgets or the canvas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from backend.api.prompt import Exemplar, Prompt
from backend.formats.scores import as_probability

PREDICTED_IOU = "predicted_iou"
TEXT_SIMILARITY = "text_similarity"
CONCEPT_SCORE = "concept_score"
RAW_SCORE_NAMES = (PREDICTED_IOU, TEXT_SIMILARITY, CONCEPT_SCORE)
DEFAULT_THRESHOLD = 0.5
"""The concept threshold a widget starts with (the server's default too)."""


@dataclass(frozen=True)
class Point:
    """A click prompt.

    Attributes:
        x: Original-image pixels, to the right.
        y: Original-image pixels, down.
        positive: True for foreground (label 1), False for background (label 0).
    """

    x: float
    y: float
    positive: bool = True


def check_inside(x: float, y: float, image_size: tuple[int, int]) -> None:
    """Raise :class:`InvalidInput` unless ``(x, y)`` lies on an image of ``image_size`` = (W, H)."""
    width, height = image_size
    if not (0 <= x <= width and 0 <= y <= height):
        raise InvalidInput(f"({x}, {y}) is outside the {width}x{height} image: use original-image pixels")


@dataclass(frozen=True)
class Box:
    """A box prompt ``[x1, y1, x2, y2]`` in original-image pixels, ``x1 <= x2``, ``y1 <= y2``."""

    x1: float
    y1: float
    x2: float
    y2: float

    @classmethod
    def from_corners(cls, x_a: float, y_a: float, x_b: float, y_b: float) -> Box:
        """The box spanned by two opposite corners given in any order."""
        return cls(min(x_a, x_b), min(y_a, y_b), max(x_a, x_b), max(y_a, y_b))

    def as_list(self) -> list[float]:
        """``[x1, y1, x2, y2]``."""
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True, eq=False)
class Candidate:
    """One of the ranked masks the model proposed for the current object, or one instance of a concept.

    Attributes:
        mask: ``HxW`` bool at the original image size.
        raw_score: The model's own number for this mask: the decoder's
            predicted IoU for clicks and boxes (it may leave ``[0, 1]``), the
            CLIP similarity of text and mask for a text prompt, SAM 3's score
            of the instance for a concept.
        stability_score: IoU of the mask thresholded above and below the 0 logit.
        raw_score_name: What ``raw_score`` is: :data:`PREDICTED_IOU`,
            :data:`TEXT_SIMILARITY` or :data:`CONCEPT_SCORE`.
        box: ``(x1, y1, x2, y2)`` of the instance as the model detected it
            (concept instances), else None.
    """

    mask: np.ndarray
    raw_score: float
    stability_score: float
    raw_score_name: str = PREDICTED_IOU
    box: tuple[float, float, float, float] | None = None

    @property
    def score(self) -> float:
        """The score shown to people, a probability in ``[0, 1]`` (see ``as_probability``)."""
        return as_probability(self.raw_score)

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(self.mask.sum())


@dataclass(eq=False)
class AcceptedMask:
    """A mask the user kept.

    Attributes:
        mask: ``HxW`` bool at the original image size.
        label: The label chosen when it was accepted.
        score: The candidate's score in ``[0, 1]`` (1.0 for masks loaded
            without one); clipped into ``[0, 1]`` when built.
        raw_scores: The model's raw numbers, by name (``predicted_iou``;
            ``text_similarity`` for a CLIP text prompt; ``concept_score`` for
            an instance of a SAM 3 concept); empty for loaded masks that
            carried none.
    """

    mask: np.ndarray
    label: str
    score: float = 1.0
    raw_scores: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.score = as_probability(self.score)
        self.raw_scores = {name: float(value) for name, value in self.raw_scores.items()}

    @classmethod
    def from_candidate(cls, candidate: Candidate, label: str) -> AcceptedMask:
        """Keep ``candidate`` with ``label``: its shown score and its raw score."""
        return cls(
            mask=candidate.mask,
            label=label,
            score=candidate.score,
            raw_scores={candidate.raw_score_name: candidate.raw_score},
        )

    @property
    def predicted_iou(self) -> float | None:
        """The decoder's raw predicted IoU, when this mask came from clicks or a box."""
        return self.raw_scores.get(PREDICTED_IOU)

    def as_dict(self) -> dict[str, Any]:
        """``{"mask", "label", "score", **raw_scores}``."""
        return {"mask": self.mask, "label": self.label, "score": self.score, **self.raw_scores}


@dataclass(frozen=True, eq=False)
class ObjectState:
    """The prompts for the current object and the model's answer to them.

    Attributes:
        points: Clicks in the order they were made.
        box: The box prompt, if one was drawn (a concept: a positive exemplar).
        text: The text prompt, if one was typed.
        candidates: Ranked candidates, best first (empty before the first
            answer); for a concept, every instance found, best score first.
        logits_id: Server id of the best candidate's low-res logits (refinement).
        selected: Index into ``candidates`` of the mask shown and accepted
            (not used by a concept).
        threshold: Set for a concept prompt (a word on a SAM 3 model): the
            instances scoring above it come back. None for everything else.
        picked: Indices of the concept instances picked to keep.
    """

    points: tuple[Point, ...] = ()
    box: Box | None = None
    text: str | None = None
    candidates: tuple[Candidate, ...] = ()
    logits_id: str | None = None
    selected: int = 0
    threshold: float | None = None
    picked: frozenset[int] = frozenset()

    @classmethod
    def concept(cls, text: str, *, threshold: float, box: Box | None = None) -> ObjectState:
        """A concept prompt: every instance of ``text`` scoring above ``threshold`` (``box``: an example)."""
        return cls(box=box, text=text, threshold=float(threshold))

    @property
    def is_concept(self) -> bool:
        """True for a concept prompt: the candidates are instances, each kept on its own."""
        return self.threshold is not None

    @property
    def has_prompt(self) -> bool:
        """True when there is something to send to the model."""
        return bool(self.points) or self.box is not None or bool(self.text)

    @property
    def chosen(self) -> Candidate | None:
        """The selected candidate, or None before the first answer (and for a concept)."""
        return self.candidates[self.selected] if self.candidates and not self.is_concept else None

    @property
    def instances(self) -> tuple[Candidate, ...]:
        """The instances of a concept answer, best first; empty for other states."""
        return self.candidates if self.is_concept else ()

    def prompt(self, *, refine_from: str | None) -> Prompt:
        """The prompt to send for this object (three candidates, or every instance of a concept).

        A concept sends its text, its threshold and the box as a positive exemplar.

        Args:
            refine_from: A ``logits_id`` to send as ``mask_input``, or None.
        """
        if self.threshold is not None:
            exemplars = None if self.box is None else [Exemplar(box=(*self.box.as_list(),), positive=True)]
            return Prompt(text=self.text or None, exemplars=exemplars, threshold=self.threshold)
        return Prompt(
            points=[(p.x, p.y) for p in self.points] or None,
            labels=[1 if p.positive else 0 for p in self.points] or None,
            box=None if self.box is None else (self.box.x1, self.box.y1, self.box.x2, self.box.y2),
            text=self.text or None,
            mask_input=refine_from,
            multimask=True,
        )

    def with_answer(self, answer: ObjectMasks) -> ObjectState:
        """This state with the model's candidates filled in, the best one selected.

        A text prompt's scores are CLIP similarities, the others predicted IoUs.
        """
        name = TEXT_SIMILARITY if self.text else PREDICTED_IOU
        candidates = tuple(
            Candidate(
                mask=np.asarray(mask, dtype=bool),
                raw_score=float(score),
                stability_score=float(stab),
                raw_score_name=name,
            )
            for mask, score, stab in zip(answer.masks, answer.scores, answer.stability_scores, strict=True)
        )
        return replace(self, candidates=candidates, logits_id=answer.logits_id, selected=0)

    def with_instances(self, answers: Sequence[ObjectMasks]) -> ObjectState:
        """This concept state with one candidate per instance the model found (best first), none picked."""
        candidates = tuple(
            Candidate(
                mask=np.asarray(answer.masks[0], dtype=bool),
                raw_score=float(answer.scores[0]),
                stability_score=float(answer.stability_scores[0]),
                raw_score_name=CONCEPT_SCORE,
                box=_box_tuple(answer.box),
            )
            for answer in answers
        )
        return replace(self, candidates=candidates, logits_id=None, selected=0, picked=frozenset())

    def without(self, indices: Iterable[int]) -> ObjectState:
        """This concept state less the instances at ``indices`` (they were kept), none picked."""
        gone = set(indices)
        left = tuple(c for i, c in enumerate(self.candidates) if i not in gone)
        return replace(self, candidates=left, picked=frozenset())


def _box_tuple(box: np.ndarray | None) -> tuple[float, float, float, float] | None:
    """``(x1, y1, x2, y2)`` floats of an answer's box, None when it has none."""
    if box is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)[:4])
    return x1, y1, x2, y2


@dataclass
class ObjectEditor:
    """The history of the current object: one :class:`ObjectState` per action.

    Attributes:
        history: Oldest first; ``history[-1]`` is what the user sees. Starts
            with one empty state.
    """

    history: list[ObjectState] = field(default_factory=lambda: [ObjectState()])

    @property
    def current(self) -> ObjectState:
        """The state shown on the canvas."""
        return self.history[-1]

    def push(self, state: ObjectState) -> None:
        """Record a new state (a new prompt and its answer)."""
        self.history.append(state)

    @property
    def can_undo(self) -> bool:
        """True when there is an earlier state to go back to."""
        return len(self.history) > 1

    def replace_current(self, state: ObjectState) -> None:
        """Change the current state in place (candidate switch: not an undo step)."""
        self.history[-1] = state

    def select(self, index: int) -> ObjectState:
        """Show candidate ``index`` (0-based) of the current answer."""
        state = self.current
        if state.is_concept:
            raise InvalidInput(
                "the answer is a set of instances, each kept on its own: pick them with toggle() or picked"
            )
        if not 0 <= index < len(state.candidates):
            raise InvalidInput(
                f"candidate {index + 1} does not exist: the current answer has "
                f"{len(state.candidates)} candidate(s); click on the image first"
            )
        self.replace_current(replace(state, selected=index))
        return self.current

    def pick(self, indices: Iterable[int]) -> ObjectState:
        """Pick exactly the concept instances at ``indices`` (0-based) to keep; not an undo step."""
        state = self.current
        chosen = frozenset(int(i) for i in indices)
        if not state.is_concept:
            raise InvalidInput("there are no instances to pick: type a word and press find on a SAM 3 model")
        wrong = sorted(i for i in chosen if not 0 <= i < len(state.candidates))
        if wrong:
            raise InvalidInput(
                f"instance {wrong[0] + 1} does not exist: the answer has {len(state.candidates)} instance(s)"
            )
        self.replace_current(replace(state, picked=chosen))
        return self.current

    def toggle(self, index: int) -> ObjectState:
        """Pick concept instance ``index`` (0-based) if it was not picked, else unpick it."""
        return self.pick(self.current.picked ^ {index})

    def restart(self, state: ObjectState) -> None:
        """Start a new history at ``state`` (what is left of a concept after some instances were kept)."""
        self.history = [state]

    def undo(self) -> bool:
        """Go back one action. Returns False when there was nothing to undo."""
        if not self.can_undo:
            return False
        self.history.pop()
        return True

    def reset(self) -> None:
        """Forget the current object (after accept or clear)."""
        self.history = [ObjectState()]
