"""The shipped demo model: architecture, training recipe and held-out set.

A SAM-architecture network shrunk for CPU training (128-pixel input cut into
8-pixel patches, so a 16x16 embedding grid and 64x64 low-res masks; a 4-block
ViT of width 128 with 8x8 windows and two global blocks; a 128-wide mask
decoder), trained from scratch on procedural scenes
(:mod:`backend.train.scenes`). Reproduce it with one command::

    sam-train --demo --out backend/hub/packaged_weights/sam_demo.pt

(three stages, :data:`DEMO_STAGES`, about 2.5 hours on one CPU core) and
measure it on scenes it never saw (seeds from
:data:`HELDOUT_FIRST_SEED` on, same difficulty) with::

    sam-eval --model backend/hub/packaged_weights/sam_demo.pt --scenes 100 --clicks 5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from backend.api.errors import InvalidInput
from backend.model.config import SamConfig, ViTConfig
from backend.train.datasets import GeneratedScenes
from backend.train.loop import TrainResult, TrainSettings, train
from backend.train.scenes import SceneSettings
from backend.train.simulation import RoundsSettings

if TYPE_CHECKING:
    from backend.model import Sam

DEMO_CONFIG = SamConfig(
    encoder="vit",
    vit=ViTConfig(
        embed_dim=128,
        depth=4,
        num_heads=4,
        global_attn_indexes=(1, 3),
        window_size=8,
        patch_size=8,
        mlp_ratio=4.0,
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
"""About 1.8 M parameters (7 MB in float32). SAM's 16-pixel patches would leave
an 8x8 grid at 128 pixels, too coarse for the scenes' small and thin shapes."""

DEMO_SCENES = SceneSettings(size=DEMO_CONFIG.image_size, min_area=20)
"""Scene difficulty for training and for the held-out evaluation."""

TRAIN_SCENE_COUNT = 1_000_000
"""Training scenes use seeds ``0 .. TRAIN_SCENE_COUNT - 1``."""

HELDOUT_FIRST_SEED = 10_000_000
"""Held-out scenes start here, far from every training seed."""

DEMO_FROM_SCRATCH = TrainSettings(
    steps=9000,
    images_per_batch=4,
    masks_per_image=4,
    accumulate=1,
    lr=1e-3,
    weight_decay=0.05,
    warmup_steps=50,
    decay_steps=(7830,),
    decay_factor=0.1,
    grad_clip=1.0,
    freeze_encoder=False,
    amp="auto",
    seed=0,
    checkpoint_every=50,
    rounds=RoundsSettings(rounds=2, rounds_without_point=0, box_probability=0.5),
)
"""Stage 1: CPU-sized version of the paper's recipe (2 prompting rounds instead of 11)."""

DEMO_CONTINUED = dataclasses.replace(
    DEMO_FROM_SCRATCH, steps=24000, warmup_steps=200, decay_steps=(21000,), seed=1
)
"""Stage 2: the same recipe restarted at the peak learning rate from stage 1's
weights (a warm restart), on scenes in another order."""

DEMO_SETTLED = dataclasses.replace(
    DEMO_FROM_SCRATCH, steps=3000, lr=1e-4, warmup_steps=1, decay_steps=(2000,), seed=2
)
"""Stage 3: a longer tail at stage 2's final learning rate (1e-4), then 1e-5."""

DEMO_STAGES: tuple[TrainSettings, ...] = (DEMO_FROM_SCRATCH, DEMO_CONTINUED, DEMO_SETTLED)
"""The demo model's training, in order; each stage starts from the previous one's weights."""


def build_demo_model(seed: int = 0) -> Sam:
    """The untrained demo network, initialised for training from scratch.

    SAM's image encoder starts from an MAE-pretrained ViT whose absolute
    position embedding is the fixed 2-D sine-cosine table; without
    pretraining, a zero position embedding leaves the image embedding blind
    to where things are and the decoder stalls on "predict nothing" for
    hundreds of steps. So the position embedding starts as that table.

    Args:
        seed: Seed of the random initialisation.

    Returns:
        The network in training mode.
    """
    from backend.model import build_sam

    torch.manual_seed(seed)
    sam = build_sam(DEMO_CONFIG)
    pos_embed = cast(torch.Tensor, sam.image_encoder.pos_embed)
    with torch.no_grad():
        pos_embed.copy_(sincos_position_table(DEMO_CONFIG.embedding_size, DEMO_CONFIG.vit.embed_dim))
    return sam.train()


def sincos_position_table(grid: int, dim: int) -> torch.Tensor:
    """MAE's 2-D sine-cosine position embedding.

    Args:
        grid: Side of the patch grid.
        dim: Embedding width (a multiple of 4).

    Returns:
        ``1 x grid x grid x dim`` float32: the first half encodes the row,
        the second half the column, each as sines then cosines of
        ``position / 10000^(k / (dim / 4))``.
    """
    quarter = dim // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    angles = torch.arange(grid, dtype=torch.float32)[:, None] * frequencies[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=1)  # grid x dim/2
    rows = table[:, None, :].expand(grid, grid, dim // 2)
    cols = table[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat([rows, cols], dim=-1)[None]


def training_scenes() -> GeneratedScenes:
    """The demo model's training data."""
    return GeneratedScenes(TRAIN_SCENE_COUNT, first_seed=0, settings=DEMO_SCENES)


def heldout_scenes(count: int, *, first_seed: int = HELDOUT_FIRST_SEED) -> GeneratedScenes:
    """``count`` scenes the demo model never saw, as hard as its training scenes."""
    return GeneratedScenes(count, first_seed=first_seed, settings=DEMO_SCENES)


def train_demo_model(
    out: str | Path,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = True,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Runs every stage of :data:`DEMO_STAGES` and writes the demo model to ``out``.

    Stage ``k`` keeps its training state in ``run_dir/stage{k}_state.pt``;
    every stage but the last also writes its model to ``run_dir/stage{k}.pt``,
    which a resumed run loads instead of training that stage again (when it
    was trained with that stage's settings).

    Args:
        out: Where the finished model goes.
        run_dir: Folder of the intermediate states and models.
        device: Where to train.
        resume: Continue from what ``run_dir`` holds; ``False`` starts over.
        progress: Show a progress bar per stage.
        should_stop: Asked before every step; True saves the running stage's
            state at that step and returns its (``stopped``) summary.

    Returns:
        The last stage's summary, or the stopped stage's.

    Raises:
        InvalidInput: When ``run_dir`` holds a stage model trained with other
            settings (pass ``resume=False``).
    """
    run_dir = Path(run_dir)
    sam = build_demo_model(DEMO_STAGES[0].seed).to(device)
    data = training_scenes()
    result = None
    for number, settings in enumerate(DEMO_STAGES, start=1):
        last = number == len(DEMO_STAGES)
        stage_out = Path(out) if last else run_dir / f"stage{number}.pt"
        if resume and not last and stage_out.exists():
            _load_finished_stage(sam, stage_out, number)
            continue
        result = train(
            sam,
            data,
            settings,
            out=stage_out,
            state_path=run_dir / f"stage{number}_state.pt",
            resume=resume,
            progress=progress,
            progress_label=f"stage {number}/{len(DEMO_STAGES)}",
            meta=_stage_meta(number),
            should_stop=should_stop,
        )
        if result.stopped:
            return result
    assert result is not None  # the last stage always trains (or resumes)
    return result


def _load_finished_stage(sam: Sam, path: Path, number: int) -> None:
    """Load stage ``number``'s model from ``path`` into ``sam``, instead of training that stage again.

    Raises:
        InvalidInput: The file was trained with other settings than that stage's.
    """
    from backend.hub import load_checkpoint

    _, state, meta = load_checkpoint(path)
    if meta.get("train_settings") != DEMO_STAGES[number - 1].to_dict():
        raise InvalidInput(
            f"{path} was trained with other settings than stage {number} of the demo "
            "recipe; pass --restart to train every stage again"
        )
    sam.load_state_dict(state)


def _stage_meta(number: int) -> dict[str, Any]:
    """What stage ``number``'s checkpoint records about the recipe: its base, data and every stage's settings."""
    return {
        "base": "scratch" if number == 1 else f"demo stage {number - 1}",
        "data": "demo-scenes",
        "stage": number,
        "stages": [settings.to_dict() for settings in DEMO_STAGES],
    }
