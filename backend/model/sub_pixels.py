"""Mask planes from the fast upscaling, put in image order.

The decoders' fast upscaling (SAM's :meth:`backend.model.mask_decoder.MaskDecoder.upscale_masks`,
SAM 2's :func:`backend.model.sam2.mask_upscaling.upscale_masks`) evaluates its two
stride-2 transposed convolutions as products over the image tokens, so each
mask's ``16 h w`` values come out indexed ``(i, j, di, dj, ei, ej)``: token
``(i, j)`` of the ``h x w`` grid, then the sub-pixel offsets of the first and
the second convolution. Pixel ``(4i + 2di + ei, 4j + 2dj + ej)`` of the
``4h x 4w`` mask holds that value.

The move is one strided copy. Moved one value at a time, its innermost run is
the pair ``ej = 0, 1`` (8 bytes in float32), which PyTorch's CPU copy handles
at a fraction of the memory's speed. The pair is adjacent in the source and
in the image, so it moves as one integer word of twice the width instead:
the same bits, for three SAM-sized float32 masks (3 x 256 x 256) in 0.05-0.08
ms against 0.52-0.55 ms on the 2-core machine of ``benchmarks/bench_sub_pixels.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

_PAIR_WORDS = {2: torch.int32, 4: torch.int64}
"""The integer type as wide as two values, by the values' byte width."""


def sub_pixels_to_image(planes: Tensor, size: tuple[int, int]) -> Tensor:
    """``B x M x 16hw`` values indexed ``(i, j, di, dj, ei, ej)`` -> ``B x M x 4h x 4w`` masks.

    Args:
        planes: ``B x M x 16hw`` (any float dtype; copied when not contiguous).
        size: ``(h, w)`` of the token grid.

    Returns:
        A new contiguous ``B x M x 4h x 4w`` tensor with the same values.
    """
    h, w = size
    b, m = planes.shape[0], planes.shape[1]
    planes = planes.contiguous()
    word = _PAIR_WORDS.get(planes.element_size())
    if word is None:  # no integer type twice as wide (float64): move single values
        image = planes.view(b, m, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return image.reshape(b, m, 4 * h, 4 * w)
    pairs = planes.view(word).view(b, m, h, w, 2, 2, 2)  # (i, j, di, dj, ei), ej in the word
    image = pairs.permute(0, 1, 2, 4, 6, 3, 5).reshape(b, m, 4 * h, 2 * w)
    return image.view(planes.dtype)
