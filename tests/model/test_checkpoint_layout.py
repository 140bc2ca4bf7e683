"""Checkpoints in the official key layout load into ours with ``strict=True``."""

from __future__ import annotations

import pytest
import torch

from backend.model import VIT_B, VIT_H, VIT_L, VIT_T, Sam, SamConfig, build_sam


def _reference(name: str) -> torch.nn.Module:
    if name == "vit_t":
        from mobile_sam import sam_model_registry
    else:
        from segment_anything import sam_model_registry
    return sam_model_registry[name]()


@pytest.mark.parametrize("name, config", [("vit_h", VIT_H), ("vit_l", VIT_L)])
def test_large_layouts_match_on_meta(name: str, config: SamConfig):
    """Same keys and shapes as the reference; strict load (meta tensors, no memory)."""
    with torch.device("meta"):
        ref = _reference(name)
        ours = build_sam(config)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert set(ref_sd) == set(our_sd)
    assert {k: tuple(v.shape) for k, v in ref_sd.items()} == {k: tuple(v.shape) for k, v in our_sd.items()}
    ours.load_state_dict(ref_sd, strict=True, assign=True)


@pytest.mark.parametrize("name, config", [("vit_b", VIT_B), ("vit_t", VIT_T)])
def test_saved_checkpoint_loads_strict(tmp_path, name: str, config: SamConfig):
    """torch.save of the reference's state dict -> torch.load(weights_only=True) -> strict load."""
    ref = _reference(name)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = build_sam(config)
    result = ours.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert isinstance(ours, Sam) and ours.config == config
    for key, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_pixel_buffers_not_in_state_dict():
    with torch.device("meta"):
        ours = build_sam(VIT_B)
    assert not any(k.startswith("pixel_") for k in ours.state_dict())
