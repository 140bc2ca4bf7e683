"""Tiny models and data shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from backend.model.config import SamConfig, ViTConfig
from backend.train.datasets import GeneratedScenes
from backend.train.scenes import SceneSettings

TINY_CONFIG = SamConfig(
    encoder="vit",
    vit=ViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=2),
    image_size=64,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
)
TINY_SCENES = SceneSettings(size=64, min_objects=2, max_objects=3, min_area=20, clutter_lines=3)


@pytest.fixture
def tiny_sam():
    from backend.model import build_sam

    torch.manual_seed(0)
    return build_sam(TINY_CONFIG)


@pytest.fixture
def tiny_scenes() -> GeneratedScenes:
    return GeneratedScenes(8, first_seed=0, settings=TINY_SCENES)
