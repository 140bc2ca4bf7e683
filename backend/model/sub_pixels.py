"""Masks from the fast upscaling's features: the hypernetwork product, then image order.

The decoders' fast upscaling (SAM's :meth:`backend.model.mask_decoder.MaskDecoder.upscale_masks`,
SAM 2's :func:`backend.model.sam2.mask_upscaling.upscale_masks`) evaluates its two
stride-2 transposed convolutions as products over the image tokens, so each
mask's ``16 h w`` values come out indexed ``(i, j, di, dj, ei, ej)``: token
``(i, j)`` of the ``h x w`` grid, then the sub-pixel offsets of the first and
the second convolution. Pixel ``(4i + 2di + ei, 4j + 2dj + ej)`` of the
``4h x 4w`` mask holds that value.

Moved one value at a time, the permutation's innermost run is the pair
``ej = 0, 1`` (8 bytes in float32), which PyTorch's CPU copy handles at a
fraction of the memory's speed. The pair is adjacent in the source and in the
image, so on a CPU it moves as one integer word of twice the width instead:
the same bits, many times faster (``benchmarks/bench_sub_pixels.py``; figures
in ``docs/models.md``). Planes that are not contiguous (one prompt's, as the
product leaves them transposed) are first copied into order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .token_products import tokens_times_weights

_PAIR_WORDS = {2: torch.int32, 4: torch.int64}
"""The integer type as wide as two values, by the values' byte width."""


def sub_pixels_to_image(planes: Tensor, size: tuple[int, int]) -> Tensor:
    """``B x M x 16hw`` values indexed ``(i, j, di, dj, ei, ej)`` -> ``B x M x 4h x 4w`` masks.

    Args:
        planes: ``B x M x 16hw`` (any float dtype, any strides).
        size: ``(h, w)`` of the token grid.

    Returns:
        A new contiguous ``B x M x 4h x 4w`` tensor with the same values.
    """
    h, w = size
    b, m = planes.shape[0], planes.shape[1]
    word = _PAIR_WORDS.get(planes.element_size())
    if word is None or planes.requires_grad or planes.device.type != "cpu":
        # No integer type twice as wide (float64), autograd records (an integer view has
        # no gradient), or a GPU (whose copy was not found slow): move single values.
        image = planes.reshape(b, m, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return image.reshape(b, m, 4 * h, 4 * w)
    flat = planes.contiguous().view(-1)
    if flat.storage_offset() % 2:  # a word must start on a whole word of the storage
        flat = flat.clone()
    pairs = flat.view(word).view(b, m, h, w, 2, 2, 2)  # (i, j, di, dj, ei), ej in the word
    image = pairs.permute(0, 1, 2, 4, 6, 3, 5).reshape(b, m, 4 * h, 2 * w)
    return image.view(planes.dtype)


def masks_from_sub_pixels(features: Tensor, hyper_in: Tensor, size: tuple[int, int]) -> Tensor:
    """The upscaled features times each mask's hypernetwork weights, in image order.

    Args:
        features: ``(B 16hw) x C`` (or any view of that many rows), rows indexed
            ``(b, i, j, di, dj, ei, ej)``.
        hyper_in: ``B x M x C`` hypernetwork weights.
        size: ``(h, w)`` of the token grid.

    Returns:
        ``B x M x 4h x 4w`` mask logits.
    """
    b, _, c = hyper_in.shape
    h, w = size
    rows = features.reshape(b, 16 * h * w, c)
    if b == 1:  # one prompt: a tokens x weights product, left transposed (M x 16hw, strided)
        planes = tokens_times_weights(rows[0], hyper_in[0]).T.unsqueeze(0)
    else:
        planes = hyper_in @ rows.transpose(1, 2)
    return sub_pixels_to_image(planes, size)
