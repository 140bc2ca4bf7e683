"""SAM 2.1 checkpoints in the training CLIs: sam-eval evaluates them, sam-train says it cannot fine-tune them."""

from __future__ import annotations

import json

import pytest
import torch

from backend.model.sam2 import build_sam2, sam2_config
from backend.train.cli import eval_main, train_main


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    """hiera_t with random weights in Meta's layout (``{"model": state_dict}``)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_sam2(sam2_config("sam2.1_hiera_t")).state_dict()}, path)
    return path


@pytest.mark.slow
def test_sam_eval_runs_the_click_simulation_on_a_sam2_checkpoint(sam2_file, capsys):
    args = ["--model", str(sam2_file), "--scenes", "1", "--clicks", "2", "--max-objects", "1", "--json"]
    assert eval_main([*args, "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(sam2_file) and report["objects"] == 1
    assert all(0.0 <= v <= 1.0 for v in report["tracks"]["top"]["miou"])


@pytest.mark.slow
def test_sam_train_refuses_a_sam2_base_saying_what_it_can_do(sam2_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = train_main(["--base", str(sam2_file), "--scenes", "2", "--out", str(tmp_path / "x.pt")])
    assert code == 2
    error = capsys.readouterr().err
    assert "Sam2" in error and "vit_b" in error and "sam-eval" in error
