"""The shipped demo model: size, loading by name, and its 1-click quality on unseen scenes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import backend

WEIGHTS = Path(backend.__file__).parent / "hub" / "packaged_weights" / "sam_demo.pt"


def test_demo_weights_ship_with_the_package_and_are_small():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 15 * 1024 * 1024


def test_demo_checkpoint_records_how_it_was_trained():
    from backend.hub import load_checkpoint
    from backend.train.demo import DEMO_CONFIG, DEMO_STAGES

    config, _, meta = load_checkpoint(WEIGHTS)
    assert config == DEMO_CONFIG
    assert meta["stages"] == [settings.to_dict() for settings in DEMO_STAGES]
    assert meta["stage"] == len(DEMO_STAGES)
    assert meta["step"] == DEMO_STAGES[-1].steps
    assert meta["train_settings"] == DEMO_STAGES[-1].to_dict()


DEMO_MIOU_TARGET = 0.75
"""Issue 3: 1-click mIoU (top-ranked mask) the shipped demo model reaches on held-out scenes."""

HELDOUT_SCENES = 100
"""The set that docs/training.md reports (``sam-eval --model demo --scenes 100``): 418 objects."""


@pytest.fixture(scope="module")
def heldout_report():
    from backend.hub import load_model
    from backend.inference.predictor import SamPredictor
    from backend.train.demo import TRAIN_SCENE_COUNT, heldout_scenes
    from backend.train.evaluate import EvalSettings, evaluate

    scenes = heldout_scenes(HELDOUT_SCENES)
    assert scenes.first_seed >= TRAIN_SCENE_COUNT, "held-out seeds never appear in training"
    sam = load_model("demo")
    with torch.inference_mode():
        report = evaluate(SamPredictor(sam), scenes, EvalSettings(clicks=1))
    assert report.objects >= 400
    return report


@pytest.mark.slow
def test_demo_model_reaches_the_one_click_target_on_heldout_scenes(heldout_report):
    assert heldout_report.miou("top", 1) >= DEMO_MIOU_TARGET


def test_sincos_position_table_separates_rows_and_columns():
    from backend.train.demo import sincos_position_table

    table = sincos_position_table(8, 16)[0]
    assert table.shape == (8, 8, 16)
    assert torch.equal(table[2, 0, :8], table[2, 7, :8]), "first half depends on the row only"
    assert torch.equal(table[0, 3, 8:], table[6, 3, 8:]), "second half depends on the column only"
    flat = table.reshape(64, 16)
    assert torch.cdist(flat, flat).add(torch.eye(64)).min() > 0, "every cell has its own code"


def test_demo_model_starts_with_the_position_table():
    from backend.train.demo import DEMO_CONFIG, build_demo_model, sincos_position_table

    sam = build_demo_model()
    expected = sincos_position_table(DEMO_CONFIG.embedding_size, DEMO_CONFIG.vit.embed_dim)
    assert torch.equal(sam.image_encoder.pos_embed.detach(), expected)
    assert sam.training
