"""Every official SAM 2.1 size: its configuration, Meta's checkpoint layout loading into ours
(video-memory keys skipped, nothing else), the configuration recognised from the weights,
and the trunk's numbers and the output shapes at a small input size."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.model.sam2 import (
    SAM2_1_HIERA_B_PLUS,
    SAM2_1_HIERA_T,
    SAM2_CONFIGS,
    VIDEO_ONLY_PREFIXES,
    Sam2Config,
    build_sam2,
    load_sam2_state_dict,
    sam2_config,
    sam2_config_from_state_dict,
)
from tests.model.sam2.reference import assert_close, build_reference

IMAGE = 256
SLOW = {"sam2.1_hiera_b+", "sam2.1_hiera_l"}  # the big ones take a while to build


def test_names_and_aliases():
    assert sam2_config("sam2.1_hiera_b+") is SAM2_1_HIERA_B_PLUS
    assert sam2_config("sam2.1_hiera_base_plus") is SAM2_1_HIERA_B_PLUS
    assert sam2_config("SAM2.1_hiera_tiny") is SAM2_1_HIERA_T
    assert sam2_config("sam2.1_hiera_t", image_size=512).image_size == 512
    with pytest.raises(ValueError, match=r"unknown SAM 2.1 model 'vit_b'; known: sam2.1_hiera_t"):
        sam2_config("vit_b")


def test_config_round_trips_through_a_dict():
    for config in SAM2_CONFIGS.values():
        assert Sam2Config.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SAM2_CONFIGS]
)
def test_official_size_loads_runs_and_matches(name):
    reference = build_reference(name, image_size=IMAGE, seed=3)
    state = reference.state_dict()
    config = sam2_config_from_state_dict({"model": state}, image_size=IMAGE)
    assert config == sam2_config(name, image_size=IMAGE)

    ours = build_sam2(config)
    report = load_sam2_state_dict(ours, {"model": state})
    video = {k for k in state if k.startswith(VIDEO_ONLY_PREFIXES)}
    assert set(report.skipped) == video
    for prefix in VIDEO_ONLY_PREFIXES:  # the skip list names only what official checkpoints hold
        assert any(k.startswith(prefix) for k in video), prefix
    assert set(ours.state_dict()) == set(state) - video

    x = torch.randn(1, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for mine, theirs in zip(ours.image_encoder.trunk(x), reference.image_encoder.trunk(x), strict=True):
            assert_close(mine, theirs)
        features = ours.encode_image(x)
        side = IMAGE // 16
        assert features.image_embed.shape == (1, 256, side, side)
        assert features.feat_s0.shape == (1, 32, 4 * side, 4 * side)
        assert features.feat_s1.shape == (1, 64, 2 * side, 2 * side)
        points = (torch.tensor([[[100.0, 60.0]]]), torch.tensor([[1]]))
        out = ours.decode(ours.prepare_decoder(features), points, None, True)
    assert out.masks.shape == (1, 3, 4 * side, 4 * side)
    assert out.iou_pred.shape == (1, 3)
    assert out.object_score_logits.shape == (1, 1)


def test_load_lists_missing_unexpected_and_misshaped_keys(tiny_pair):
    ours, reference = tiny_pair
    state = dict(reference.state_dict())
    del state["no_mem_embed"]
    state["image_encoder.trunk.extra.weight"] = torch.zeros(1)
    state["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    target = build_sam2(ours.config)
    with pytest.raises(ValueError) as info:
        load_sam2_state_dict(target, state)
    message = str(info.value)
    assert "missing (1): no_mem_embed" in message
    assert "unexpected (1): image_encoder.trunk.extra.weight" in message
    assert "mis-shaped (1): sam_mask_decoder.iou_token.weight: file (1, 7), network (1, 256)" in message


def test_unknown_layout_says_what_it_found(tiny_pair):
    _, reference = tiny_pair
    state = dict(reference.state_dict())
    state["image_encoder.trunk.patch_embed.proj.weight"] = torch.zeros(80, 3, 7, 7)
    with pytest.raises(ValueError, match=r"embed_dim=80, stages=\(1, 2, 7, 2\).*none of the official"):
        sam2_config_from_state_dict(state)
    with pytest.raises(ValueError, match="not a SAM 2 image-encoder state dict"):
        sam2_config_from_state_dict({"image_encoder.weight": torch.zeros(1)})


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_sam2(replace(SAM2_1_HIERA_T, image_size=1000))
