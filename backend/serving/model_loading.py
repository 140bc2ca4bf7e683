"""Loading the served model, on the model thread: the network, its predictor and the cache dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from backend.serving.cache_entries import parse_dtype
from backend.serving.config import ServerConfig


@dataclass(frozen=True)
class LoadedModel:
    """What the service serves once loading succeeded.

    Attributes:
        model: The ``Sam`` module in eval mode, on its device and dtype.
        predictor: A ``SamPredictor`` over it.
        device: Where the model runs.
        storage_dtype: Dtype of cached embeddings (``config.cache_dtype``;
            ``auto``: float16 on CUDA, the model's dtype elsewhere).
    """

    model: Any
    predictor: Any
    device: torch.device
    storage_dtype: torch.dtype


def load_for_serving(config: ServerConfig) -> LoadedModel:
    """Load ``config.model`` (a name, a checkpoint path, or a module used as it is: its device and dtype).

    Raises:
        Whatever loading raises (missing or corrupt weights, unknown names,
        out of memory); the service reports it.
    """
    from backend.inference.predictor import SamPredictor

    dtype = parse_dtype(config.dtype)
    model: Any
    if isinstance(config.model, torch.nn.Module):
        model = config.model.eval()
    else:
        from backend.registry import load_model, pick_device

        model = load_model(config.model, device=pick_device(config.device), dtype=dtype).eval()
    predictor = SamPredictor(model)
    device = predictor.device
    if config.cache_dtype == "auto":
        storage = torch.float16 if device.type == "cuda" else predictor.dtype
    else:
        storage = parse_dtype(config.cache_dtype)
    return LoadedModel(model=model, predictor=predictor, device=device, storage_dtype=storage)
