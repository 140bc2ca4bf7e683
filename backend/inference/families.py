"""Model families: which predictor and which engine serve each kind of network.

The one place that maps a loaded network to its family's code. Everything
else (the server's model loading, segment-everything on crops, ``sam-eval``,
``sam-annotate``) asks here instead of branching on network types. A new
family adds one :class:`Family` to :data:`FAMILIES` (see docs/architecture.md,
"Adding a model family").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.api.errors import InvalidInput
from backend.hub import MODELS, load_model
from backend.hub.records import (
    ALL_PROMPT_KINDS,
    FAMILY_AUTOMASK_DEFAULTS,
    SAM,
    SAM2_1,
    SAM3,
    SAM3_PROMPT_KINDS,
)
from backend.inference.predictor import SamPredictor
from backend.inference.sam2_predictor import Sam2Predictor
from backend.inference.sam3.loading import Sam3Models, load_sam3
from backend.inference.sam3.predictor import Sam3Predictor
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
    network: type
    predictor: Callable[[Any], Any]
    engine: str
    automask_defaults: dict[str, float]
    prompt_kinds: tuple[str, ...] = ALL_PROMPT_KINDS
    """Prompt kinds of the family's networks given as paths or modules (a record says its own)."""
    load: Callable[[str, str, torch.dtype], Any] | None = None
    """Loads a name's source or a path (device, dtype); None: :func:`backend.hub.load_model`."""


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            SAM,
            Sam,
            SamPredictor,
            "backend.inference.sam_engine:SamEngine",
            dict(FAMILY_AUTOMASK_DEFAULTS[SAM]),
        ),
        Family(
            SAM2_1,
            Sam2,
            Sam2Predictor,
            "backend.inference.sam2_engine:Sam2Engine",
            dict(FAMILY_AUTOMASK_DEFAULTS[SAM2_1]),
        ),
        Family(
            SAM3,
            Sam3Models,
            Sam3Predictor,
            "backend.inference.sam3_engine:Sam3Engine",
            dict(FAMILY_AUTOMASK_DEFAULTS[SAM3]),
            prompt_kinds=SAM3_PROMPT_KINDS,
            load=lambda source, device, dtype: load_sam3(source, device=device, dtype=dtype),
        ),
    )
}


def load_network(spec: str | os.PathLike[str], *, device: str, dtype: torch.dtype) -> Any:
    """A registry name or a path -> the loaded network of its family.

    A name loads its record's source (a weights file, or SAM 3's Hub
    repository); a folder is a SAM 3 checkpoint in ``save_pretrained`` layout;
    a file is recognised by its weights (:func:`backend.hub.load_model`).
    """
    record = MODELS.get(str(spec))
    if record is not None:
        family = FAMILIES[record.family]
        source = record.hub_repo or str(spec)
    else:
        family = FAMILIES[SAM3] if Path(spec).expanduser().is_dir() else FAMILIES[SAM]
        source = str(spec)
    if family.load is not None:
        return family.load(source, device, dtype)
    return load_model(source, device=device, dtype=dtype)


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
