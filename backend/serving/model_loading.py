"""Loading a served model on the model thread: the network of its family behind its engine.

A name or a checkpoint path goes through :func:`backend.hub.load_model`
(registered names, any of our or Meta's checkpoint files); an already built
network (tests, notebooks) is used as it is, on its device and dtype. The
network's family (:mod:`backend.inference.families`) picks the engine; the
accepted prompts and segment-everything defaults come from the model record
(the family's reference defaults for paths and modules).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from backend.hub import MODELS, parse_dtype, pick_device
from backend.inference.engine import EngineFacts, ModelEngine
from backend.inference.families import family_of, load_network
from backend.serving.config import ServerConfig


def model_label(spec: Any) -> str:
    """A model's name in the API: the registry name or path string as given, the name of a
    ``(name, network)`` pair, ``custom`` for a bare network."""
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return spec[0]
    return spec if isinstance(spec, str) else "custom"


def load_engine(spec: Any, config: ServerConfig) -> ModelEngine:
    """Load ``spec`` (a name, a checkpoint path, or a network used as it is) behind its family's engine.

    Args:
        spec: What to load; a ``(name, network)`` pair serves a built network under a name.
        config: Device, dtype and cache dtype.

    Raises:
        Whatever loading raises (missing or corrupt weights, unknown names,
        out of memory); the service reports it.
    """
    name = model_label(spec)
    if isinstance(spec, tuple):
        spec = spec[1]
    network: Any
    if isinstance(spec, (str, os.PathLike)):
        network = load_network(spec, device=pick_device(config.device), dtype=parse_dtype(config.dtype))
    else:
        network = spec
    if isinstance(network, torch.nn.Module):
        network = network.eval()
    family = family_of(network)
    record = MODELS.get(spec) if isinstance(spec, str) else None
    facts = EngineFacts(
        family=family.name,
        prompt_kinds=record.prompt_kinds if record else family.prompt_kinds,
        automask_defaults=dict(record.automask_defaults if record else family.automask_defaults),
    )
    module_name, class_name = family.engine.split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    device, dtype = _placement(network)
    storage = _storage_dtype(config.cache_dtype, device, dtype)
    return engine_class(network, name=name, facts=facts, storage_dtype=storage)


def _placement(network: Any) -> tuple[torch.device, torch.dtype]:
    """Where a loaded network runs and in which dtype (a module's first parameter, else its own attributes)."""
    if isinstance(network, torch.nn.Module):
        parameter = next(network.parameters())
        return parameter.device, parameter.dtype
    return network.device, network.dtype


def _storage_dtype(cache_dtype: str, device: torch.device, model_dtype: torch.dtype) -> torch.dtype:
    """``auto``: float16 on CUDA, the model's dtype elsewhere; else the named dtype."""
    if cache_dtype == "auto":
        return torch.float16 if device.type == "cuda" else model_dtype
    return parse_dtype(cache_dtype)
