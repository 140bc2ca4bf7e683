"""Model families: which predictor and which engine serve each kind of network.

The one place that maps a loaded network to its family's code. Everything
else (the server's model loading, segment-everything on crops, ``sam-eval``,
``sam-annotate``) asks here instead of branching on network types. A new
family adds one :class:`Family` to :data:`FAMILIES` (see docs/architecture.md,
"Adding a model family").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from backend.api.errors import InvalidInput
from backend.hub.records import META_AUTOMASK_DEFAULTS, SAM, SAM2_1, SAM2_1_AUTOMASK_DEFAULTS
from backend.inference.predictor import SamPredictor
from backend.inference.sam2_predictor import Sam2Predictor
from backend.model import Sam
from backend.model.sam2 import Sam2


@dataclass(frozen=True)
class Family:
    """One model family's code.

    Attributes:
        name: The family's name in model records (``sam``, ``sam2.1``).
        network: The network class it serves.
        predictor: Builds the predictor of a loaded network (numpy in, ranked masks out).
        engine: Import path ``module:Class`` of its :class:`~backend.inference.engine.ModelEngine`
            (imported when a server loads one).
        automask_defaults: Segment-everything thresholds of the family's
            reference generator, for networks given as paths or modules.
    """

    name: str
    network: type[torch.nn.Module]
    predictor: Callable[[Any], Any]
    engine: str
    automask_defaults: dict[str, float]


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            SAM, Sam, SamPredictor, "backend.inference.sam_engine:SamEngine", dict(META_AUTOMASK_DEFAULTS)
        ),
        Family(
            SAM2_1,
            Sam2,
            Sam2Predictor,
            "backend.inference.sam2_engine:Sam2Engine",
            dict(SAM2_1_AUTOMASK_DEFAULTS),
        ),
    )
}


def family_of(network: torch.nn.Module) -> Family:
    """The family of a loaded network.

    Raises:
        InvalidInput: A network of no known family.
    """
    for family in FAMILIES.values():
        if isinstance(network, family.network):
            return family
    known = ", ".join(f.network.__name__ for f in FAMILIES.values())
    raise InvalidInput(f"a {type(network).__name__} is no network of a served family ({known})")


def predictor_for(network: torch.nn.Module) -> Any:
    """A new predictor for a loaded network of any family."""
    return family_of(network).predictor(network)
