"""Whole-factor bilinear upsampling equals torch's bilinear kernel on the part it computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.upsampling import upsample_bilinear_integer


@pytest.mark.parametrize(
    ("factor", "h", "w", "out_h", "out_w"),
    [
        (4, 64, 64, 256, 256),  # the whole square
        (4, 64, 64, 192, 256),  # a landscape image's crop
        (4, 64, 64, 83, 129),  # crops that end inside a block
        (2, 32, 32, 64, 50),  # the demo model's factor
        (3, 9, 7, 25, 20),  # odd factor: the middle phase copies
        (1, 5, 6, 5, 6),
        (4, 1, 1, 4, 3),  # a single sample: every phase clamps to it
        (4, 2, 3, 8, 12),
    ],
)
def test_matches_torch_bilinear_on_the_kept_corner(factor, h, w, out_h, out_w):
    planes = torch.randn(3, h, w, generator=torch.Generator().manual_seed(factor * h + w)) * 20
    want = F.interpolate(planes[:, None], (factor * h, factor * w), mode="bilinear", align_corners=False)
    got = upsample_bilinear_integer(planes, factor, out_h, out_w)
    assert got.shape == (3, out_h, out_w)
    # torch rounds its own weights for a factor of 3; even factors are exact in binary.
    tolerance = (4 if factor % 2 == 0 or factor == 1 else 64) * torch.finfo(torch.float32).eps
    assert (got - want[:, 0, :out_h, :out_w]).abs().max() <= tolerance * planes.abs().max()


def test_reads_only_the_blocks_it_needs():
    planes = torch.randn(1, 16, 16)
    poisoned = planes.clone()
    poisoned[:, 5:, :] = float("nan")  # rows beyond block 3's neighbour
    got = upsample_bilinear_integer(poisoned, 4, 16, 64)
    assert torch.equal(got, upsample_bilinear_integer(planes, 4, 16, 64))


@pytest.mark.parametrize(("factor", "out_h", "out_w"), [(0, 4, 4), (2, 9, 4), (2, 4, 0)])
def test_impossible_sizes_are_refused(factor, out_h, out_w):
    with pytest.raises(ValueError, match="cannot take"):
        upsample_bilinear_integer(torch.zeros(1, 4, 4), factor, out_h, out_w)
