"""What the server says about SAM 3 before loading it (no torch, no transformers).

:mod:`backend.hub.records` builds the ``sam3`` model record from it. The prompt
kinds are the API's names (:mod:`backend.api.prompt_kinds`), each with the kind
of answer it gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.api.prompt_kinds import CLICK_PROMPT_KINDS, CONCEPT_PROMPT_KINDS

ANSWER_INSTANCES = "instances"
"""One mask, box and score per instance found, best score first."""
ANSWER_RANKED_MASKS = "ranked_masks"
"""Candidate masks for one object, ranked by predicted IoU."""


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
        **dict.fromkeys(CONCEPT_PROMPT_KINDS, ANSWER_INSTANCES),
        **dict.fromkeys(CLICK_PROMPT_KINDS, ANSWER_RANKED_MASKS),
    },
    description=(
        "SAM 3 (Meta, through Hugging Face transformers): a word or example boxes find every instance; "
        "clicks and boxes give three ranked masks for one object"
    ),
)
"""The registry record of ``facebook/sam3``."""
