"""``sam-train --demo``: its stages run in order, each from the previous one's weights, and resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.hub import load_checkpoint
from backend.train import demo
from backend.train.cli import train_main
from backend.train.simulation import RoundsSettings

SHORT_STAGE = dataclasses.replace(
    demo.DEMO_FROM_SCRATCH,
    steps=2,
    images_per_batch=1,
    masks_per_image=1,
    warmup_steps=1,
    decay_steps=(),
    checkpoint_every=1,
    rounds=RoundsSettings(rounds=1, rounds_without_point=0),
)


@pytest.fixture
def short_stages(monkeypatch):
    stages = (SHORT_STAGE, dataclasses.replace(SHORT_STAGE, steps=3, seed=1))
    monkeypatch.setattr(demo, "DEMO_STAGES", stages)
    return stages


def _train_demo(tmp_path, *extra: str) -> int:
    out = tmp_path / "demo.pt"
    return train_main(["--demo", "--out", str(out), "--no-progress", "--threads", "1", *extra])


@pytest.mark.slow
def test_each_stage_starts_from_the_previous_stage(short_stages, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train_demo(tmp_path) == 0

    run_dir = tmp_path / "runs" / "demo"
    _, stage1, stage1_meta = load_checkpoint(run_dir / "stage1.pt")
    config, final, meta = load_checkpoint(tmp_path / "demo.pt")
    assert config == demo.DEMO_CONFIG
    assert stage1_meta["step"] == 2 and stage1_meta["base"] == "scratch"
    assert meta["step"] == 3 and meta["stage"] == 2 and meta["base"] == "demo stage 1"
    assert meta["stages"] == [settings.to_dict() for settings in short_stages]

    # Replaying stage 2 by hand from stage 1's weights gives the shipped weights.
    sam = demo.build_demo_model()
    sam.load_state_dict(stage1)
    from backend.train.loop import train

    train(
        sam,
        demo.training_scenes(),
        short_stages[1],
        out=tmp_path / "replay.pt",
        state_path=tmp_path / "replay_state.pt",
        progress=False,
    )
    _, replayed, _ = load_checkpoint(tmp_path / "replay.pt")
    assert all(torch.equal(replayed[key], final[key]) for key in final)


@pytest.mark.slow
def test_a_rerun_reuses_finished_stages(short_stages, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train_demo(tmp_path) == 0
    stage1 = tmp_path / "runs" / "demo" / "stage1.pt"
    written = stage1.stat().st_mtime_ns
    _, before, _ = load_checkpoint(tmp_path / "demo.pt")

    assert _train_demo(tmp_path) == 0
    assert stage1.stat().st_mtime_ns == written, "stage 1 was not trained again"
    _, after, _ = load_checkpoint(tmp_path / "demo.pt")
    assert all(torch.equal(before[key], after[key]) for key in before)

    assert _train_demo(tmp_path, "--restart") == 0
    assert stage1.stat().st_mtime_ns != written, "--restart trains every stage again"


@pytest.mark.slow
def test_a_stage_trained_with_other_settings_is_not_reused(short_stages, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _train_demo(tmp_path) == 0
    changed = (dataclasses.replace(short_stages[0], lr=short_stages[0].lr / 2), short_stages[1])
    monkeypatch.setattr(demo, "DEMO_STAGES", changed)

    assert _train_demo(tmp_path) == 2
    assert "stage1.pt was trained with other settings" in capsys.readouterr().err
    assert _train_demo(tmp_path, "--restart") == 0
    _, _, stage1_meta = load_checkpoint(tmp_path / "runs" / "demo" / "stage1.pt")
    assert stage1_meta["train_settings"] == changed[0].to_dict()
