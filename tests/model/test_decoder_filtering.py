"""``MaskDecoder.forward_cached_above``: the IoU filter applied before upscaling."""

from __future__ import annotations

import pytest
import torch

from backend.model import build_sam
from tests.support.reference import tiny_vit_config


@pytest.fixture(scope="module")
def decoded():
    """A tiny random network, its decoder cache, 7 point prompts and their full multimask output."""
    torch.manual_seed(3)
    sam = build_sam(tiny_vit_config()).eval()
    with torch.no_grad():
        for param in sam.parameters():
            param.normal_(0.0, 0.2)
        embedding = torch.randn(
            1, sam.config.prompt_embed_dim, sam.config.embedding_size, sam.config.embedding_size
        )
        cache = sam.prepare_decoder(embedding)
        gen = torch.Generator().manual_seed(4)
        coords = torch.rand(7, 1, 2, generator=gen) * sam.config.image_size
        points = (coords, torch.ones(7, 1, dtype=torch.int64))
        low_res, iou = sam.decode(cache, points=points, multimask_output=True)
    return sam, cache, points, low_res, iou


def test_kept_candidates_equal_the_full_decoding(decoded):
    sam, cache, points, low_res, iou = decoded
    threshold = float(iou.flatten().median())
    with torch.no_grad():
        kept = sam.decode_above(cache, points, threshold)
    want_prompt, want_candidate = torch.nonzero(iou > threshold, as_tuple=True)
    assert 0 < len(kept.iou) < iou.numel()
    assert torch.equal(kept.prompt, want_prompt)
    assert torch.equal(kept.candidate, want_candidate)
    torch.testing.assert_close(kept.iou, iou[want_prompt, want_candidate], rtol=0, atol=1e-6)
    scale = low_res.abs().max()
    torch.testing.assert_close(
        kept.low_res, low_res[want_prompt, want_candidate], rtol=0, atol=1e-5 * float(scale)
    )


def test_no_threshold_keeps_every_candidate_in_prompt_major_order(decoded):
    sam, cache, points, low_res, iou = decoded
    with torch.no_grad():
        kept = sam.decode_above(cache, points, None)
    assert kept.prompt.tolist() == [p for p in range(7) for _ in range(3)]
    assert kept.candidate.tolist() == [0, 1, 2] * 7
    torch.testing.assert_close(
        kept.low_res, low_res.flatten(0, 1), rtol=0, atol=1e-5 * float(low_res.abs().max())
    )


def test_a_threshold_above_every_score_returns_empty_tensors(decoded):
    sam, cache, points, _, iou = decoded
    with torch.no_grad():
        kept = sam.decode_above(cache, points, float(iou.max()) + 1.0)
    side = sam.config.low_res_size
    assert kept.low_res.shape == (0, side, side)
    assert kept.iou.shape == kept.prompt.shape == kept.candidate.shape == (0,)
