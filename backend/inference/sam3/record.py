"""What the server says about SAM 3 before loading it (no torch, no transformers).

A plain record for now; :mod:`backend.hub.records` will take it over when the
engine interface serves several families. The prompt kinds are the facts
``GET /v1/models`` and the OpenAPI document state per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROMPT_TEXT = "text"
"""A noun phrase (``"red car"``): every instance of the concept."""
PROMPT_EXEMPLAR_BOXES = "exemplar_boxes"
"""Boxes around examples, each positive or negative: every instance like the positives."""
PROMPT_POINTS = "points"
"""Clicks with labels (1 foreground, 0 background): three ranked masks for one object."""
PROMPT_BOX = "box"
"""One box around one object: three ranked masks for it."""
PROMPT_MASK_INPUT = "mask_input"
"""Low-res logits of an earlier answer, to refine it."""

ANSWER_INSTANCES = "instances"
"""One mask, box and score per instance found, best score first."""
ANSWER_RANKED_MASKS = "ranked_masks"
"""Candidate masks for one object, ranked by predicted IoU."""

CONCEPT_PROMPTS = (PROMPT_TEXT, PROMPT_EXEMPLAR_BOXES)
"""Prompt kinds answered by the concept detector (``Sam3Model``)."""
INTERACTIVE_PROMPTS = (PROMPT_POINTS, PROMPT_BOX, PROMPT_MASK_INPUT)
"""Prompt kinds answered by the interactive head (``Sam3TrackerModel``, same checkpoint)."""


@dataclass(frozen=True, kw_only=True)
class Sam3Record:
    """One SAM 3 model: where its weights are, under which licence, which prompts it takes.

    Attributes:
        name: Registry name (``"sam3"``).
        family: Model family (``"sam3"``): which predictor answers it.
        hub_repo: Hugging Face Hub repository of the weights (transformers layout).
        licence: Licence of the weights, in words (not an SPDX id: Meta's own).
        licence_url: Where the licence is accepted and read.
        gated: The Hub asks each user to accept the licence before download.
        image_size: Side of the square model input in pixels.
        extra: The pip extra that installs what the family needs.
        prompt_kinds: Prompt kind -> answer kind (``instances`` or ``ranked_masks``).
            The interactive kinds need the tracker weights, which the Hub
            repository has; a folder saved from ``Sam3Model`` alone has not.
        description: One line for people choosing a model.
    """

    name: str
    family: str
    hub_repo: str
    licence: str
    licence_url: str
    gated: bool
    image_size: int
    extra: str
    prompt_kinds: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``GET /v1/models``)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "hub_repo": self.hub_repo,
            "licence": self.licence,
            "licence_url": self.licence_url,
            "gated": self.gated,
            "image_size": self.image_size,
            "extra": self.extra,
            "prompt_kinds": dict(self.prompt_kinds),
        }


SAM3 = Sam3Record(
    name="sam3",
    family="sam3",
    hub_repo="facebook/sam3",
    licence="SAM License (Meta), gated",
    licence_url="https://huggingface.co/facebook/sam3",
    gated=True,
    image_size=1008,
    extra="sam3",
    prompt_kinds={
        PROMPT_TEXT: ANSWER_INSTANCES,
        PROMPT_EXEMPLAR_BOXES: ANSWER_INSTANCES,
        PROMPT_POINTS: ANSWER_RANKED_MASKS,
        PROMPT_BOX: ANSWER_RANKED_MASKS,
        PROMPT_MASK_INPUT: ANSWER_RANKED_MASKS,
    },
    description=(
        "SAM 3 (Meta, through Hugging Face transformers): a word or example boxes find every instance; "
        "clicks and boxes give three ranked masks for one object"
    ),
)
"""The registry record of ``facebook/sam3``."""
