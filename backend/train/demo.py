"""The shipped demo model: architecture, training recipe and held-out set.

A SAM-architecture network shrunk for CPU training (128-pixel input, a
4-block ViT of width 128 with 4x4 windows and two global blocks, a 128-wide
mask decoder), trained from scratch on procedural scenes
(:mod:`backend.train.scenes`). Reproduce it with one command::

    sam-train --demo --out backend/weights/sam_demo.pt

and measure it on scenes it never saw (seeds from
:data:`HELDOUT_FIRST_SEED` on, same difficulty) with::

    sam-eval --model backend/weights/sam_demo.pt --scenes 100 --clicks 5
"""

from __future__ import annotations

from backend.model.config import SamConfig, ViTConfig
from backend.train.datasets import GeneratedScenes
from backend.train.loop import TrainSettings
from backend.train.scenes import SceneSettings
from backend.train.simulation import RoundsSettings

DEMO_CONFIG = SamConfig(
    encoder="vit",
    vit=ViTConfig(
        embed_dim=128, depth=4, num_heads=4, global_attn_indexes=(1, 3), window_size=4, mlp_ratio=4.0
    ),
    image_size=128,
    prompt_embed_dim=128,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=512,
    decoder_num_heads=4,
    iou_head_depth=3,
    iou_head_hidden_dim=128,
)
"""About 1.9 M parameters (7.4 MB in float32)."""

DEMO_SCENES = SceneSettings(size=DEMO_CONFIG.image_size, min_area=20)
"""Scene difficulty for training and for the held-out evaluation."""

TRAIN_SCENE_COUNT = 1_000_000
"""Training scenes use seeds ``0 .. TRAIN_SCENE_COUNT - 1``."""

HELDOUT_FIRST_SEED = 10_000_000
"""Held-out scenes start here, far from every training seed."""

DEMO_SETTINGS = TrainSettings(
    steps=1500,
    images_per_batch=4,
    masks_per_image=4,
    accumulate=1,
    lr=1e-3,
    weight_decay=0.05,
    warmup_steps=50,
    decay_steps=(1300,),
    decay_factor=0.1,
    grad_clip=1.0,
    freeze_encoder=False,
    amp="auto",
    seed=0,
    checkpoint_every=25,
    rounds=RoundsSettings(rounds=2, rounds_without_point=0, box_probability=0.5),
)
"""CPU-sized version of the paper's recipe (2 prompting rounds instead of 11)."""


def training_scenes() -> GeneratedScenes:
    """The demo model's training data."""
    return GeneratedScenes(TRAIN_SCENE_COUNT, first_seed=0, settings=DEMO_SCENES)


def heldout_scenes(count: int, *, first_seed: int = HELDOUT_FIRST_SEED) -> GeneratedScenes:
    """``count`` scenes the demo model never saw, as hard as its training scenes."""
    return GeneratedScenes(count, first_seed=first_seed, settings=DEMO_SCENES)
