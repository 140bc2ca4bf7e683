"""A tiny random SAM (128-pixel input, 32-wide) and test pictures, shared by server and client tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend.hub import save_checkpoint
from backend.model import SamConfig, ViTConfig, build_sam
from backend.serving.config import ServerConfig

TINY_CONFIG = SamConfig(
    vit=ViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
    image_size=128,
    prompt_embed_dim=32,
    mask_in_chans=4,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)


def build_tiny_sam(seed: int = 0) -> torch.nn.Module:
    """Random weights, eval mode, CPU float32."""
    torch.manual_seed(seed)
    return build_sam(TINY_CONFIG).eval()


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """Our checkpoint format (``sam-server/1``), loadable by ``sam-server --model PATH``."""
    save_checkpoint(
        path, model_state=build_tiny_sam(seed).state_dict(), config=TINY_CONFIG, meta={"name": "tiny-test"}
    )
    return path


def picture(seed: int = 0, height: int = 60, width: int = 80) -> np.ndarray:
    """``HxWx3`` uint8: noise with a bright rectangle (so masks have structure)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = 230
    return pixels


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG file of ``pixels``."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_config(tiny_sam, **overrides) -> ServerConfig:
    """Test settings: the tiny model, float32 cache, no plugins."""
    settings = {"model": tiny_sam, "cache_dtype": "float32", "plugins": False, "max_batch": 16, **overrides}
    return ServerConfig(**settings)
