"""A tiny random SAM 2.1 on disk, for the tests that start a real model server (Label Studio, the widget)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_sam2(path: Path) -> Path:
    """A random SAM 2.1 hiera_t (seed 0) at a 256-pixel input, saved in our checkpoint format (with its configuration)."""
    import torch

    from backend.hub.checkpoint_files import save_checkpoint
    from backend.model.sam2 import build_sam2, sam2_config

    if not path.exists():
        torch.manual_seed(0)
        config = sam2_config("sam2.1_hiera_t", image_size=256)
        save_checkpoint(path, model_state=build_sam2(config).state_dict(), config=config)
    return path
