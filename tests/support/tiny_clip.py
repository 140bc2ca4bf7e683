"""A CLIP with tiny widths and random weights, so no test needs downloaded CLIP weights."""

from __future__ import annotations

import torch

TINY_CLIP_RESOLUTION = 32


def tiny_clip_module(*, seed: int = 0) -> torch.nn.Module:
    """``clip.model.CLIP`` with 32-pixel images and 64-wide encoders (random weights)."""
    import clip

    torch.manual_seed(seed)
    return clip.model.CLIP(
        embed_dim=16,
        image_resolution=TINY_CLIP_RESOLUTION,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=1,
    )
