"""SAM 2.1 checkpoints in the training CLIs: sam-eval evaluates them, sam-train fine-tunes them and the
result loads, serves and evaluates as SAM 2.1."""

from __future__ import annotations

import json

import pytest
import torch

from backend.hub import load_checkpoint, load_model, save_checkpoint
from backend.inference.families import family_of, load_network
from backend.model.sam2 import Sam2, build_sam2, sam2_config
from backend.train.cli import eval_main, train_main

from .conftest import fresh_sam2

ONE_QUICK_STEP = ["--steps", "1", "--batch", "1", "--masks-per-image", "1", "--rounds", "1"]
ONE_QUICK_STEP += ["--rounds-without-point", "0", "--no-progress"]


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
def test_sam_train_fine_tunes_a_sam2_checkpoint_and_the_result_evaluates_as_sam2(
    sam2_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tuned.pt"
    args = ["--base", str(sam2_file), "--scenes", "1", "--freeze-encoder", "--out", str(out)]
    assert train_main([*args, *ONE_QUICK_STEP]) == 0
    assert "model written to" in capsys.readouterr().out
    raw = torch.load(out, weights_only=True)
    assert raw["family"] == "sam2.1" and raw["meta"]["base"] == str(sam2_file)
    assert len(list((tmp_path / "runs" / "tuned" / "embeddings").glob("*.pt"))) == 1
    args = ["--model", str(out), "--scenes", "1", "--clicks", "2", "--max-objects", "1", "--json"]
    assert eval_main([*args, "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objects"] == 1 and all(0.0 <= v <= 1.0 for v in report["tracks"]["top"]["miou"])


class _StopBeforeStep:
    """Stands in for the CLI's signal handling: asks the run to stop before step ``step`` (0-based)."""

    def __init__(self, step: int) -> None:
        self.asked = 0
        self.step = step
        self.exit_status = 130

    def __call__(self) -> _StopBeforeStep:
        return self

    def __enter__(self) -> _StopBeforeStep:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.step


@pytest.mark.slow
def test_a_tuned_sam2_file_loads_strictly_serves_and_resumes(tmp_path, capsys, monkeypatch):
    """A small SAM 2.1 base in our format: trained values load back, the server's loader picks SAM 2.1,
    a stopped run resumes where it stopped."""
    monkeypatch.chdir(tmp_path)
    base = fresh_sam2()
    save_checkpoint(tmp_path / "base.pt", model_state=base.state_dict(), config=base.config, meta={})
    out = tmp_path / "tuned.pt"
    args = ["--base", "base.pt", "--scenes", "2", "--freeze-encoder", "--out", str(out), "--lr", "1e-2"]
    args += ["--steps", "3", "--warmup", "0", "--no-progress"]
    with monkeypatch.context() as patch:
        patch.setattr("backend.train.cli.StopRequest", _StopBeforeStep(2))
        assert train_main(args) == 130
    assert "interrupted at step 2" in capsys.readouterr().err and not out.exists()
    assert train_main(args) == 0
    assert "trained to step 3 (1 step in this call, resumed at step 2" in capsys.readouterr().out

    config, state, meta = load_checkpoint(out)
    assert config == base.config and meta["step"] == 3
    tuned = load_model(out)
    assert isinstance(tuned, Sam2) and tuned.state_dict().keys() == state.keys()
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in state.items())
    assert not torch.equal(state["sam_mask_decoder.iou_token.weight"], base.sam_mask_decoder.iou_token.weight)
    assert torch.equal(
        state["image_encoder.trunk.patch_embed.proj.weight"], base.image_encoder.trunk.patch_embed.proj.weight
    )
    served = load_network(str(out), device="cpu", dtype=torch.float32)  # what sam-server --model does
    assert isinstance(served, Sam2) and family_of(served).name == "sam2.1"
