"""Concept prompts (a phrase, example boxes) checked against the image, and their answer.

A concept prompt asks for every instance of something: a noun phrase, boxes
around examples (positive: "like this one", negative: "not like that one"),
or both. The answer is one :class:`ConceptInstance` per instance found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.inference.engine import Instance as ConceptInstance
from backend.inference.prompts import check_prompt

ExemplarBox = tuple[Sequence[float], bool]
"""``([x1, y1, x2, y2], positive)``: a box in original pixels and whether it is an example (True) or a
counter-example (False)."""


@dataclass(frozen=True)
class ConceptPrompt:
    """A validated concept prompt on one image.

    Attributes:
        text: The phrase, stripped, or None.
        boxes: ``Nx4`` float32 XYXY exemplar boxes in original pixels, or None.
        labels: ``N`` int64, 1 positive / 0 negative, or None.
    """

    text: str | None
    boxes: np.ndarray | None
    labels: np.ndarray | None


def check_concept_prompt(
    *,
    width: int,
    height: int,
    text: str | None,
    exemplar_boxes: Sequence[ExemplarBox] | None,
) -> ConceptPrompt:
    """Validate a concept prompt on a ``width x height`` image.

    Raises:
        InvalidInput: Text that is not a non-empty string, malformed or
            out-of-image boxes, a label that is not a bool, or neither text
            nor a positive exemplar.
    """
    phrase = None
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput('text must be a non-empty phrase such as "red car"')
        phrase = text.strip()
    boxes = labels = None
    if exemplar_boxes:
        try:
            pairs = [(box, positive) for box, positive in exemplar_boxes]
        except (TypeError, ValueError) as exc:
            raise InvalidInput("exemplar_boxes is a list of ([x1, y1, x2, y2], positive) pairs") from exc
        if not all(isinstance(positive, (bool, np.bool_)) for _, positive in pairs):
            raise InvalidInput("each exemplar box needs positive = true (like this) or false (not like this)")
        prompt = check_prompt(
            width=width,
            height=height,
            points=None,
            labels=None,
            box=None,
            boxes=[box for box, _ in pairs],
            has_mask_input=False,
        )
        boxes = prompt.boxes
        labels = np.array([int(positive) for _, positive in pairs], dtype=np.int64)
    if phrase is None and (labels is None or not labels.any()):
        raise InvalidInput("give text, or at least one positive exemplar box, for a concept prompt")
    return ConceptPrompt(text=phrase, boxes=boxes, labels=labels)


def check_probability(name: str, value: float) -> float:
    """``value`` as a float in ``[0, 1]``.

    Raises:
        InvalidInput: Not a number in ``[0, 1]``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}") from exc
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInput(f"{name} must be in [0, 1], got {value!r}")
    return number


def instances_by_score(result: dict[str, Any]) -> list[ConceptInstance]:
    """transformers' post-processed answer for one image, best score first.

    Args:
        result: One entry of ``Sam3Processor.post_process_instance_segmentation``:
            ``scores`` ``N``, ``boxes`` ``Nx4`` XYXY pixels, ``masks`` ``NxHxW`` 0/1.

    Returns:
        N instances sorted by descending score (ties keep the detector's query order).
    """
    scores = result["scores"].float().cpu()
    order = scores.argsort(descending=True, stable=True)
    masks = result["masks"][order].cpu().numpy().astype(bool)
    boxes = result["boxes"][order].float().cpu().numpy()
    return [
        ConceptInstance(mask=mask, box=box, score=float(score))
        for mask, box, score in zip(masks, boxes, scores[order].tolist(), strict=True)
    ]
