"""Building networks from weights: ``load_model(name_or_path, device, dtype)`` and ``infer_config``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backend.api.errors import InvalidInput
from backend.hub.checkpoint_files import load_checkpoint, load_state_strict
from backend.hub.devices import pick_device
from backend.hub.downloads import resolve_weights
from backend.hub.dtypes import parse_dtype
from backend.hub.records import MODELS
from backend.model import VIT_B, VIT_H, VIT_L, VIT_T, Sam, SamConfig, build_sam


def infer_config(state_dict: dict[str, Any]) -> SamConfig:
    """The official configuration whose layout a plain state dict has.

    Raises:
        InvalidInput: The weights match none of vit_b, vit_l, vit_h, vit_t.
    """
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return VIT_T
    proj = state_dict.get("image_encoder.patch_embed.proj.weight")
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for config in (VIT_B, VIT_L, VIT_H):
        if proj is not None and proj.shape[0] == config.vit.embed_dim and depth == config.vit.depth:
            return config
    raise InvalidInput(
        "cannot tell which network these weights belong to (not an official SAM / MobileSAM layout); "
        "pass config=SamConfig(...) or save them with backend.hub.save_checkpoint"
    )


def load_model(
    name_or_path: str | Path,
    *,
    device: str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    config: SamConfig | None = None,
    download: bool = True,
    progress: bool = True,
) -> Sam:
    """Build a registered (or local) model with its weights, ready for inference.

    Args:
        name_or_path: A registry name (``vit_h``, ``vit_l``, ``vit_b``,
            ``vit_t``, ``demo``) or a checkpoint path (ours or an official file).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        dtype: Floating-point dtype of the parameters (``torch.float16`` or
            ``"float16"``...).
        config: Network configuration, overriding the checkpoint's and the
            registry's (needed for plain state dicts of unofficial layouts).
        download: Download missing official weights into the cache.
        progress: Show a progress bar while downloading.

    Returns:
        The ``Sam`` module in ``eval()`` mode on ``device`` in ``dtype``.

    Raises:
        InvalidInput: Unknown name, missing path, unreadable or mismatching checkpoint, bad device or dtype.
        WeightsUnavailable: Weights cannot be found nor downloaded (the message says where to put them).
    """
    torch_dtype = parse_dtype(dtype)
    target = pick_device(device)
    path = resolve_weights(name_or_path, download=download, progress=progress)
    file_config, state_dict, _ = load_checkpoint(path)
    record = MODELS.get(str(name_or_path))
    config = config or file_config or (record.config if record else None) or infer_config(state_dict)
    sam = build_sam(config)
    load_state_strict(sam, state_dict)
    return sam.to(device=target, dtype=torch_dtype).eval()
