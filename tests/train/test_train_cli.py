from __future__ import annotations

import json

import pytest
import torch

from backend.checkpoints import load_checkpoint, save_checkpoint
from backend.train.cli import eval_main, train_main

from .conftest import TINY_CONFIG


@pytest.fixture
def tiny_checkpoint(tiny_sam, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model_state=tiny_sam.state_dict(), config=TINY_CONFIG, meta={})
    return path


@pytest.mark.slow
def test_sam_train_fine_tunes_a_base_model_and_writes_a_loadable_checkpoint(
    tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tuned.pt"
    code = train_main(
        [
            "--scenes",
            "3",
            "--base",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "1",
            "--masks-per-image",
            "1",
            "--rounds",
            "2",
            "--rounds-without-point",
            "1",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    config, state, meta = load_checkpoint(out)
    assert config == TINY_CONFIG and meta["step"] == 2 and meta["base"] == str(tiny_checkpoint)
    assert (tmp_path / "runs" / "tuned" / "state.pt").exists()
    _, base_state, _ = load_checkpoint(tiny_checkpoint)
    assert any(not torch.equal(state[k], base_state[k]) for k in state)


def test_sam_train_without_base_explains_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--scenes", "2", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--base" in capsys.readouterr().err


@pytest.mark.slow
def test_sam_eval_prints_json_metrics(tiny_checkpoint, capsys):
    code = eval_main(
        [
            "--model",
            str(tiny_checkpoint),
            "--scenes",
            "2",
            "--clicks",
            "2",
            "--max-objects",
            "1",
            "--json",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objects"] == 2 and report["clicks"] == 2
    for track in ("top", "oracle"):
        assert len(report["tracks"][track]["miou"]) == 2
        assert all(0.0 <= v <= 1.0 for v in report["tracks"][track]["miou"])
        assert 1 <= report["tracks"][track]["noc@85"] <= 2
    assert report["tracks"]["oracle"]["miou"][0] >= report["tracks"]["top"]["miou"][0]


def test_sam_eval_reports_a_missing_dataset(tiny_checkpoint, tmp_path, capsys):
    assert eval_main(["--model", str(tiny_checkpoint), "--data", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
