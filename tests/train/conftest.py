"""Tiny models and data shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from backend.model.config import SamConfig, ViTConfig
from backend.train.datasets import GeneratedScenes
from backend.train.loop import TrainSettings
from backend.train.scenes import SceneSettings
from backend.train.simulation import RoundsSettings

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


def quick_settings(**overrides) -> TrainSettings:
    """A few steps of two images and two masks each, checkpoints every two steps; ``overrides`` win."""
    base = dict(
        steps=4,
        images_per_batch=2,
        masks_per_image=2,
        lr=2e-3,
        weight_decay=0.0,
        warmup_steps=1,
        checkpoint_every=2,
        rounds=RoundsSettings(rounds=2, rounds_without_point=1, box_probability=0.5),
    )
    base.update(overrides)
    return TrainSettings(**base)


@pytest.fixture
def tiny_sam():
    from backend.model import build_sam

    torch.manual_seed(0)
    return build_sam(TINY_CONFIG)


@pytest.fixture
def tiny_scenes() -> GeneratedScenes:
    return GeneratedScenes(8, first_seed=0, settings=TINY_SCENES)


def tiny_sam2_config():
    """A SAM 2.1 image network small enough to train in a test (64-pixel input, like the tiny scenes)."""
    from backend.model.sam2 import HieraConfig, Sam2Config

    return Sam2Config(
        hiera=HieraConfig(
            embed_dim=16,
            num_heads=1,
            stages=(1, 1, 2, 1),
            global_att_blocks=(3,),
            window_spec=(4, 4, 4, 2),
            window_pos_embed_bkg_spatial_size=(4, 4),
        ),
        image_size=64,
        hidden_dim=32,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
    )


def fresh_sam2():
    """The tiny SAM 2.1 network with seeded random weights (the same on every call)."""
    from backend.model.sam2 import build_sam2

    torch.manual_seed(0)
    return build_sam2(tiny_sam2_config())


@pytest.fixture
def tiny_sam2():
    return fresh_sam2()
