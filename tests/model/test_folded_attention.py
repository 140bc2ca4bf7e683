"""The two-way transformer's image -> token scores from projected image queries, against the
plain per-head product, for one prompt and for several (shared or per-prompt image queries)."""

from __future__ import annotations

import pytest
import torch

from backend.model.transformer import Attention, image_to_token_scores_projected


def _plain_scores(attn: Attention, q_img: torch.Tensor, kt: torch.Tensor) -> torch.Tensor:
    """B x (H T) x N: ``q_h . k_h / sqrt(d)`` for every head, token and image token."""
    B, T, Ci = kt.shape
    H = attn.num_heads
    d = Ci // H
    q = attn.heads(q_img.expand(B, -1, -1))  # B x H x N x d
    k = attn.heads(kt)  # B x H x T x d
    return (k @ q.transpose(-1, -2) * d**-0.5).reshape(B, H * T, -1)


@pytest.mark.parametrize(("batch", "shared"), [(1, True), (3, True), (3, False)])
def test_projected_scores_equal_the_per_head_products(batch: int, shared: bool) -> None:
    torch.manual_seed(0)
    attn = Attention(embedding_dim=32, num_heads=4, downsample_rate=2)
    q_img = torch.randn(1 if shared else batch, 50, attn.internal_dim)
    kt = torch.randn(batch, 7, attn.internal_dim)
    with torch.inference_mode():
        got = image_to_token_scores_projected(attn, q_img, kt)
    assert got.shape == (batch, attn.num_heads * 7, 50)
    torch.testing.assert_close(got, _plain_scores(attn, q_img, kt), rtol=1e-5, atol=1e-5)
