"""The one image pre-processing step of SAM 1: normalise with the pixel statistics, pad to the model's square.

:meth:`backend.model.Sam.preprocess`, :meth:`backend.inference.SamPredictor.preprocess`
and the training loop's batches all call :func:`normalize_and_pad`, so the
network sees the same input however it is reached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_and_pad(
    images: Tensor,
    *,
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    size: int,
    dtype: torch.dtype,
) -> Tensor:
    """``(B)x3xHxW`` RGB on the 0..255 scale -> normalised, zero-padded (bottom/right) to ``size x size``.

    The arithmetic runs in float32 (float64 for a float64 ``dtype``) with the
    statistics as given, whatever the input's dtype (uint8 or float) and the
    model's, and the result is rounded to ``dtype`` once, at the end: a
    half-precision model gets its float32 twin's input, rounded.

    Args:
        images: One ``3xHxW`` image or a ``Bx3xHxW`` batch, ``H, W <= size``.
        pixel_mean: Per-channel RGB mean on the 0..255 scale (``SamConfig.pixel_mean``).
        pixel_std: Per-channel RGB standard deviation on the 0..255 scale.
        size: Side of the square model input.
        dtype: The result's dtype (the network's).
    """
    compute = torch.promote_types(dtype, torch.float32)
    mean = torch.tensor(pixel_mean, device=images.device, dtype=compute).view(-1, 1, 1)
    std = torch.tensor(pixel_std, device=images.device, dtype=compute).view(-1, 1, 1)
    x = (images.to(compute) - mean) / std
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h)).to(dtype)
