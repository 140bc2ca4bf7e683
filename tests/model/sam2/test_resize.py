"""The predictor's final resize by whole factors equals bilinear ``F.interpolate``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.inference.sam2_predictor import resize_whole_factors


@pytest.mark.parametrize(("fh", "fw"), [(1, 1), (1, 2), (3, 4), (4, 4), (5, 3), (2, 7)])
def test_whole_factor_resize_equals_interpolate(fh, fw):
    planes = 4 * torch.randn(3, 17, 23, generator=torch.Generator().manual_seed(fh * 10 + fw))
    ours = resize_whole_factors(planes, fh, fw)
    ref = F.interpolate(planes[:, None], scale_factor=(fh, fw), mode="bilinear", align_corners=False)[:, 0]
    assert ours.shape == (3, 17 * fh, 23 * fw)
    # PyTorch computes the sample positions from a float32 scale; the difference is rounding.
    assert float((ours - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
