"""Checkpoint files: our format round trip, atomic writes, official state dicts, strict loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backend.api.errors import InvalidInput
from backend.hub import (
    CHECKPOINT_FORMAT,
    checkpoint_files,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)
from backend.model.sam2 import Sam2Config, sam2_config
from tests.support.reference import tiny_vit_config

CONFIG = tiny_vit_config()


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3), "b.steps": torch.tensor(7)}


def test_round_trip_keeps_config_weights_and_meta(tmp_path):
    meta = {"step": 12, "metrics": {"miou": 0.5}, "shape": (1, 2), "rng": torch.arange(4), "note": None}
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model_state=_state(), config=CONFIG, meta=meta)
    config, state, loaded_meta = load_checkpoint(path)
    assert config == CONFIG
    assert state.keys() == _state().keys() and all(torch.equal(state[k], v) for k, v in _state().items())
    assert loaded_meta["metrics"] == {"miou": 0.5} and loaded_meta["shape"] == (1, 2)
    assert torch.equal(loaded_meta["rng"], torch.arange(4))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and set(raw) == {"format", "family", "config", "model", "meta"}
    assert raw["family"] == "sam"


def test_a_sam2_config_round_trips_with_its_family(tmp_path):
    config = sam2_config("sam2.1_hiera_t", image_size=256)
    save_checkpoint(tmp_path / "m.pt", model_state=_state(), config=config, meta={"step": 1})
    loaded, state, meta = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(loaded, Sam2Config) and loaded == config and meta == {"step": 1}
    assert torch.load(tmp_path / "m.pt", weights_only=True)["family"] == "sam2.1"


@pytest.mark.parametrize("config", [CONFIG, sam2_config("sam2.1_hiera_s")], ids=["sam", "sam2.1"])
def test_a_file_without_family_is_recognised_from_its_config(tmp_path, config):
    payload = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "model": _state(), "meta": {}}
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")[0] == config


def test_an_unknown_family_or_config_type_is_refused(tmp_path):
    payload = {"format": CHECKPOINT_FORMAT, "family": "sam9", "config": {}, "model": _state(), "meta": {}}
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(InvalidInput, match="sam9"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(InvalidInput, match="SamConfig or a Sam2Config"):
        save_checkpoint(tmp_path / "m.pt", model_state=_state(), config={"image_size": 64}, meta={})  # type: ignore[arg-type]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, model_state=_state(), config=CONFIG, meta={"version": 1})
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_files.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model_state=_state(), config=CONFIG, meta={"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


@pytest.mark.parametrize("meta", [{"value": np.float32(1.5)}, {"array": np.zeros(2)}, {"fn": print}])
def test_meta_that_safe_loading_refuses_is_rejected_before_writing(tmp_path, meta):
    with pytest.raises(InvalidInput, match="meta"):
        save_checkpoint(tmp_path / "m.pt", model_state=_state(), config=CONFIG, meta=meta)
    assert list(tmp_path.iterdir()) == []


def test_model_state_must_hold_tensors(tmp_path):
    with pytest.raises(InvalidInput, match="state dict"):
        save_checkpoint(tmp_path / "m.pt", model_state={"a": 1.0}, config=CONFIG, meta={})


def test_official_plain_state_dicts_and_wrappers_load_without_config(tmp_path):
    torch.save(_state(), tmp_path / "plain.pth")
    config, state, meta = load_checkpoint(tmp_path / "plain.pth")
    assert config is None and meta == {} and state.keys() == _state().keys()
    torch.save({"model": _state(), "epoch": 3}, tmp_path / "wrapped.pth")
    assert load_checkpoint(tmp_path / "wrapped.pth")[1].keys() == _state().keys()


class _Pickled:
    pass


def test_unreadable_files_raise_invalid_input(tmp_path):
    save_checkpoint(tmp_path / "good.pt", model_state=_state(), config=CONFIG, meta={})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"obj": _Pickled()}, tmp_path / "pickled.pt")
    torch.save({"format": "sam-server/99", "model": _state(), "config": {}}, tmp_path / "future.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name, match in [
        ("truncated.pt", "truncated"),
        ("garbage.pt", "cannot read"),
        ("pickled.pt", "weights_only"),
        ("future.pt", "sam-server/99"),
        ("list.pt", "state dict"),
        ("missing.pt", "no checkpoint"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            load_checkpoint(tmp_path / name)


def test_strict_loading_copies_matching_weights():
    model = nn.Linear(2, 3)
    state = {"weight": torch.ones(3, 2), "bias": torch.zeros(3, dtype=torch.float64)}
    load_state_strict(model, state)
    assert torch.equal(model.weight, torch.ones(3, 2)) and model.bias.dtype == torch.float32


def test_strict_loading_lists_missing_unexpected_and_mis_shaped_keys():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("bias")}
    state["0.weight"] = torch.zeros(5, 5)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(InvalidInput) as info:
        load_state_strict(model, state)
    message = str(info.value)
    assert (
        "12 missing" in message and "0.bias" in message and "9.bias" in message and "10.bias" not in message
    )
    assert "1 unexpected: extra.weight" in message
    assert "0.weight: checkpoint (5, 5) vs model (2, 2)" in message


def test_strict_loading_hints_at_a_data_parallel_prefix():
    model = nn.Linear(2, 3)
    with pytest.raises(InvalidInput, match="module."):
        load_state_strict(model, {f"module.{k}": v for k, v in model.state_dict().items()})


def test_random_bytes_always_get_the_clear_corrupt_file_message(tmp_path):
    """torch.load fails in many ways on garbage (IndexError among them); every one is the same clear error."""
    rng = np.random.default_rng(0)
    for i in range(60):
        path = tmp_path / f"garbage{i}.pt"
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(InvalidInput, match="cannot read checkpoint"):
            load_checkpoint(path)
