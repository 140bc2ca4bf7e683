"""Loading a served model on the model thread: the network of its family behind its engine.

A name or a checkpoint path goes through :func:`backend.hub.load_model`
(SAM 1 and MobileSAM names, any of our or Meta's checkpoint files); an
already built network (tests, notebooks) is used as it is, on its device
and dtype. The network's class picks the engine; the family's facts come
from the model record.
"""

from __future__ import annotations

from typing import Any

import torch

from backend.hub import automask_defaults_for, parse_dtype
from backend.inference.engine import EngineFacts, ModelEngine
from backend.serving.config import ServerConfig


def model_label(spec: Any) -> str:
    """A printable model name: the registry name or path string as given, ``custom`` for anything else."""
    return spec if isinstance(spec, str) else "custom"


def load_engine(spec: Any, config: ServerConfig) -> ModelEngine:
    """Load ``spec`` (a name, a checkpoint path, or a network used as it is) behind its family's engine.

    Args:
        spec: What to load.
        config: Device, dtype and cache dtype.

    Raises:
        Whatever loading raises (missing or corrupt weights, unknown names,
        out of memory); the service reports it.
    """
    dtype = parse_dtype(config.dtype)
    model: Any
    if isinstance(spec, torch.nn.Module):
        model = spec.eval()
    else:
        from backend.hub import load_model, pick_device

        model = load_model(spec, device=pick_device(config.device), dtype=dtype).eval()
    return engine_for(
        model, name=model_label(spec), automask_defaults=automask_defaults_for(spec), config=config
    )


def engine_for(
    model: torch.nn.Module, *, name: str, automask_defaults: dict[str, float], config: ServerConfig
) -> ModelEngine:
    """The engine of a loaded network's family.

    Raises:
        InvalidInput: A network of no served family.
    """
    from backend.api.errors import InvalidInput
    from backend.model import Sam
    from backend.model.sam2 import Sam2

    parameter = next(model.parameters())
    storage = _storage_dtype(config.cache_dtype, parameter.device, parameter.dtype)
    if isinstance(model, Sam):
        from backend.inference.sam_engine import SamEngine

        facts = EngineFacts(family="sam", automask_defaults=automask_defaults)
        return SamEngine(model, name=name, facts=facts, storage_dtype=storage)
    if isinstance(model, Sam2):
        from backend.inference.sam2_engine import Sam2Engine

        facts = EngineFacts(
            family="sam2.1",
            prompt_kinds=("points", "box", "boxes", "mask"),
            automask_defaults=automask_defaults,
        )
        return Sam2Engine(model, name=name, facts=facts, storage_dtype=storage)
    raise InvalidInput(f"cannot serve a {type(model).__name__}: give a SAM, MobileSAM or SAM 2.1 network")


def _storage_dtype(cache_dtype: str, device: torch.device, model_dtype: torch.dtype) -> torch.dtype:
    """``auto``: float16 on CUDA, the model's dtype elsewhere; else the named dtype."""
    if cache_dtype == "auto":
        return torch.float16 if device.type == "cuda" else model_dtype
    return parse_dtype(cache_dtype)
