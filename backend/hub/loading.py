"""Building networks from weights: ``load_model(name_or_path, device, dtype)`` and ``infer_config``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from backend.api.errors import InvalidInput
from backend.hub.checkpoint_files import load_checkpoint, load_state_strict
from backend.hub.devices import pick_device
from backend.hub.downloads import resolve_weights
from backend.hub.dtypes import parse_dtype
from backend.hub.records import FAMILY_AUTOMASK_DEFAULTS, META_AUTOMASK_DEFAULTS, MODELS, SAM, SAM2_1, SAM3
from backend.model import VIT_B, VIT_H, VIT_L, VIT_T, Sam, SamConfig, build_sam
from backend.model.sam2 import Sam2, Sam2Config, build_sam2, load_sam2_state_dict, sam2_config_from_state_dict


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
    config: SamConfig | Sam2Config | None = None,
    download: bool = True,
    progress: bool = True,
) -> Sam | Sam2:
    """Build a registered (or local) model with its weights, ready for inference.

    Args:
        name_or_path: A registry name (``vit_h``, ``vit_l``, ``vit_b``,
            ``vit_t``, ``demo``, ``sam2.1_hiera_t``...) or a checkpoint path
            (ours, or an official SAM, MobileSAM or SAM 2.1 file).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``.
        dtype: Floating-point dtype of the parameters (``torch.float16`` or
            ``"float16"``...).
        config: Network configuration, overriding the checkpoint's and the
            registry's (needed for plain state dicts of unofficial layouts).
        download: Download missing official weights into the cache.
        progress: Show a progress bar while downloading.

    Returns:
        The network (``Sam``, or ``Sam2`` for the SAM 2.1 family) in ``eval()``
        mode on ``device`` in ``dtype``.

    Raises:
        InvalidInput: Unknown name, missing path, unreadable or mismatching checkpoint, bad device or dtype.
        WeightsUnavailable: Weights cannot be found nor downloaded (the message says where to put them).
    """
    torch_dtype = parse_dtype(dtype)
    target = pick_device(device)
    path = resolve_weights(name_or_path, download=download, progress=progress)
    file_config, state_dict, _ = load_checkpoint(path)
    record = MODELS.get(str(name_or_path))
    config = config or file_config or (record.config if record else None)
    family = record.family if record else family_of_weights(state_dict, config)
    network = _BUILDERS[family](config, state_dict)
    return network.to(device=target, dtype=torch_dtype).eval()


def family_of_weights(state_dict: dict[str, Any], config: SamConfig | Sam2Config | None) -> str:
    """The family a checkpoint belongs to: from its configuration, else from its keys."""
    if isinstance(config, Sam2Config) or (config is None and _SAM2_KEY in state_dict):
        return SAM2_1
    return SAM


def family_of_file(path: str | Path) -> str | None:
    """The family of the weights at ``path`` (a SAM 3 folder, or a checkpoint file read
    memory-mapped: no tensor data is loaded; a file in PyTorch's pre-1.6 format, which
    cannot be mapped, is read whole), or None when it cannot be read."""
    try:
        path = Path(path).expanduser()
        if path.is_dir():
            return SAM3
        try:
            config, state_dict, _ = load_checkpoint(path, mmap=True)
        except InvalidInput:
            config, state_dict, _ = load_checkpoint(path)
    except (InvalidInput, OSError):  # missing, unreadable, a name the file system refuses
        return None
    return family_of_weights(state_dict, config)


def automask_defaults_for(model: object) -> dict[str, float]:
    """Segment-everything thresholds for a model: its record's for a registry name, its family's
    for a checkpoint path (read from the file's keys), Meta's for anything else."""
    if isinstance(model, str) and model in MODELS:
        return dict(MODELS[model].automask_defaults)
    if isinstance(model, (str, Path)):
        family = family_of_file(model)
        if family is not None:
            return dict(FAMILY_AUTOMASK_DEFAULTS[family])
    return dict(META_AUTOMASK_DEFAULTS)


_SAM2_KEY = "image_encoder.trunk.patch_embed.proj.weight"
"""A key only SAM 2 image encoders have (the Hiera trunk's patch embedding)."""


def _build_sam(config: SamConfig | Sam2Config | None, state_dict: dict[str, Any]) -> Sam:
    if isinstance(config, Sam2Config):
        raise InvalidInput("a SAM 2.1 configuration cannot build a SAM network")
    sam = build_sam(config or infer_config(state_dict))
    load_state_strict(sam, state_dict)
    return sam


def _build_sam2(config: SamConfig | Sam2Config | None, state_dict: dict[str, Any]) -> Sam2:
    if isinstance(config, SamConfig):
        raise InvalidInput("a SAM configuration cannot build a SAM 2.1 network")
    try:
        network = build_sam2(config or sam2_config_from_state_dict(state_dict))
        load_sam2_state_dict(network, state_dict)
    except ValueError as exc:  # the layout is no official one, or keys are missing / mis-shaped
        raise InvalidInput(str(exc)) from None
    return network


_BUILDERS: dict[str, Callable[[SamConfig | Sam2Config | None, dict[str, Any]], Sam | Sam2]] = {
    SAM: _build_sam,
    SAM2_1: _build_sam2,
}
"""Family -> builds the network from its configuration (or the weights' layout) and loads the weights."""
