"""The shipped demo model: size, loading by name, and its 1-click quality on unseen scenes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import backend

WEIGHTS = Path(backend.__file__).parent / "weights" / "sam_demo.pt"


def test_demo_weights_ship_with_the_package_and_are_small():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 15 * 1024 * 1024


def test_demo_checkpoint_records_how_it_was_trained():
    from backend.checkpoints import load_checkpoint
    from backend.train.demo import DEMO_CONFIG, DEMO_SETTINGS

    config, _, meta = load_checkpoint(WEIGHTS)
    assert config == DEMO_CONFIG
    assert meta["step"] == DEMO_SETTINGS.steps
    assert meta["train_settings"] == DEMO_SETTINGS.to_dict()


@pytest.mark.slow
def test_demo_model_one_click_miou_on_heldout_scenes():
    from backend.inference.predictor import SamPredictor
    from backend.registry import load_model
    from backend.train.demo import TRAIN_SCENE_COUNT, heldout_scenes
    from backend.train.evaluate import EvalSettings, evaluate

    scenes = heldout_scenes(40)
    assert scenes.first_seed >= TRAIN_SCENE_COUNT, "held-out seeds never appear in training"
    sam = load_model("demo")
    with torch.inference_mode():
        report = evaluate(SamPredictor(sam), scenes, EvalSettings(clicks=1))
    assert report.objects >= 100
    assert report.miou("top", 1) >= 0.75
