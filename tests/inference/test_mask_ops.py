"""Thresholds and counts on mask logits agree with torch's own comparison, on any layout."""

from __future__ import annotations

import pytest
import torch

from backend.inference.mask_ops import above_threshold, count_above, count_true, stability_score


def _logits() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 37, 53, generator=g) * 2.0


@pytest.mark.parametrize("layout", ["contiguous", "cropped view", "transposed view"])
@pytest.mark.parametrize("threshold", [-1.0, 0.0, 1.0])
def test_above_threshold_and_counts_equal_the_comparison(layout: str, threshold: float) -> None:
    logits = _logits()
    if layout == "cropped view":
        logits = logits[:, :, 1:30, 2:50]
    elif layout == "transposed view":
        logits = logits.transpose(-1, -2)
    want = logits > threshold
    got = above_threshold(logits, threshold)
    assert got.dtype == torch.bool and got.shape == want.shape
    assert torch.equal(got, want)
    assert torch.equal(count_above(logits, threshold), want.sum(dim=(-1, -2)))
    assert torch.equal(count_true(want), want.sum(dim=(-1, -2)))


def test_stability_score_is_the_iou_of_the_two_shifted_masks() -> None:
    logits = _logits()
    inner = (logits > 1.0).sum(dim=(-1, -2)).float()
    outer = (logits > -1.0).sum(dim=(-1, -2)).float()
    torch.testing.assert_close(stability_score(logits), inner / outer)
    # An empty mask at both thresholds is perfectly stable.
    assert torch.equal(stability_score(torch.full((1, 4, 4), -5.0)), torch.ones(1))


def test_other_dtypes_and_autograd_keep_the_torch_comparison() -> None:
    logits = _logits()
    assert torch.equal(above_threshold(logits.bfloat16(), 0.0), logits.bfloat16() > 0.0)
    tracked = logits.clone().requires_grad_(True)
    assert torch.equal(above_threshold(tracked, 0.5), logits > 0.5)
    assert torch.equal(count_above(tracked, 0.5), (logits > 0.5).sum(dim=(-1, -2)))
