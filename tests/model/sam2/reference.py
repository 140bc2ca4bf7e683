"""Meta's SAM 2.1 (the ``sam2`` package, test-only) with random weights, to compare ours against.

Product code never imports ``sam2``; these helpers build Meta's network from
its own hydra configuration (``configs/sam2.1/sam2.1_hiera_*.yaml``) with
``ckpt_path=None``, so both networks hold the same random parameters. Where
``sam2`` is not installed, the tests that need it skip (:func:`meta_sam2`);
the others, which test ours alone, still run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.sam2 import Sam2, build_sam2, load_sam2_state_dict, sam2_config_from_state_dict

SIZE_SUFFIXES = {"sam2.1_hiera_t": "t", "sam2.1_hiera_s": "s", "sam2.1_hiera_b+": "b+", "sam2.1_hiera_l": "l"}


def meta_sam2() -> None:
    """Skip the calling test unless Meta's ``sam2`` package is importable."""
    pytest.importorskip(
        "sam2", reason="comparing with Meta's SAM 2.1 needs its sam2 package (pip install sam2==1.1.0)"
    )


def build_reference(name: str = "sam2.1_hiera_t", *, image_size: int = 256, seed: int = 0) -> torch.nn.Module:
    """Meta's ``SAM2Base`` for ``name`` at ``image_size``, eval mode, on the CPU, random weights.

    Parameters Meta initialises to constants (position embeddings, LayerNorm
    scales and shifts) are randomised too, so that every weight matters.
    """
    meta_sam2()
    from sam2.build_sam import build_sam2 as build_meta

    torch.manual_seed(seed)
    model = build_meta(
        f"configs/sam2.1/sam2.1_hiera_{SIZE_SUFFIXES[name]}.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "pos_embed" in param_name or "norm" in param_name or "no_mem_embed" in param_name:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model.eval()


def ours_from(reference: torch.nn.Module, image_size: int) -> Sam2:
    """Our network with the reference's weights, its configuration recognised from the weights."""
    state = reference.state_dict()
    ours = build_sam2(sam2_config_from_state_dict(state, image_size=image_size))
    load_sam2_state_dict(ours, {"model": state})
    return ours.eval()


def reference_predictor(reference: torch.nn.Module):
    """Meta's ``SAM2ImagePredictor``; its hard-coded 1024-px feature sizes set for the model's size."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(reference)
    side = reference.image_size // 16
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
    return predictor


def reference_features(reference: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """``[feat_s0, feat_s1, image_embed]`` as ``SAM2ImagePredictor.set_image`` computes them."""
    with torch.no_grad():
        backbone = reference.forward_image(images)
        _, feats, _, sizes = reference._prepare_backbone_features(backbone)
        feats[-1] = feats[-1] + reference.no_mem_embed
    b = images.shape[0]
    return [f.permute(1, 2, 0).reshape(b, -1, *s) for f, s in zip(feats, sizes, strict=True)]


def assert_close(ours: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, rel: float = 1e-4) -> None:
    """max |ours - ref| <= rel * max |ref| (shapes equal)."""
    a = np.asarray(ours.detach() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    b = np.asarray(ref.detach() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if b.size == 0:
        return
    scale = max(float(np.abs(b).max()), 1e-6)
    diff = float(np.abs(a - b).max())
    assert diff <= rel * scale, f"max abs diff {diff:.3g} > {rel} x {scale:.3g}"


def assert_masks_match(ours: np.ndarray, ref_logits: np.ndarray, rel: float = 1e-4) -> None:
    """Binary masks identical except where the reference logit is within tolerance of 0."""
    ref_logits = np.asarray(ref_logits, dtype=np.float64)
    tol = rel * max(float(np.abs(ref_logits).max()), 1e-6)
    differ = np.asarray(ours) != (ref_logits > 0)
    assert not (differ & (np.abs(ref_logits) > tol)).any(), f"{int(differ.sum())} pixels differ away from 0"
