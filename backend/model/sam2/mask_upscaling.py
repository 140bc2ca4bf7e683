"""The SAM 2 mask decoder's upscaling: two stride-2 transposed convolutions that also add the
high-resolution features (stride 8 after the first, stride 4 after the second), then the
product with the hypernetwork weights.

Reference arithmetic (Meta's ``MaskDecoder.predict_masks``)::

    up = gelu(layer_norm(deconv1(src) + feat_s1))
    up = gelu(deconv2(up) + feat_s0)
    masks = hyper_in @ up.flatten(2)

The fast path evaluates each transposed convolution as one product of the
image tokens (channels last) with the kernel laid out as
``(di, dj, out channel) x in channel``, as SAM's decoder does
(:meth:`backend.model.mask_decoder.MaskDecoder.upscale_masks`): the rows of
the result stay in input-token order, with the sub-pixel offsets innermost.
The high-resolution features are laid out once per image in that same row
order (:func:`high_res_rows`), so that adding them is one contiguous pass.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import LayerNorm2d
from ..sub_pixels import masks_from_sub_pixels
from ..token_products import tokens_times_weights
from .plain_modules import all_plain


class HighResRows(NamedTuple):
    """The high-resolution features in the upscaling's row order (one image, or B).

    Attributes:
        s1: ``(1|B) x 4N x C1``: ``feat_s1[c, 2i+di, 2j+dj]`` at row ``(i, j, di, dj)``.
        s0: ``(1|B) x 16N x C2``: ``feat_s0[c, 4i+2di+ei, 4j+2dj+ej]`` at row
            ``(i, j, di, dj, ei, ej)``.
    """

    s1: Tensor
    s0: Tensor


def high_res_rows(feat_s0: Tensor, feat_s1: Tensor) -> HighResRows:
    """``feat_s0`` ``Bx C2 x4hx4w`` and ``feat_s1`` ``BxC1x2hx2w`` -> :class:`HighResRows` (copies)."""
    b, c1, h2, w2 = feat_s1.shape
    h, w = h2 // 2, w2 // 2
    s1 = feat_s1.reshape(b, c1, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, 4 * h * w, c1)
    c2 = feat_s0.shape[1]
    s0 = feat_s0.reshape(b, c2, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1).reshape(b, 16 * h * w, c2)
    return HighResRows(s1.contiguous(), s0.contiguous())


def upscaling_is_plain(upscaling: nn.Sequential) -> bool:
    """Whether ``upscaling`` is the stock (deconv, LayerNorm2d, GELU, deconv, GELU) stack without hooks."""
    if len(upscaling) != 5:
        return False
    types = (nn.ConvTranspose2d, LayerNorm2d, nn.GELU, nn.ConvTranspose2d, nn.GELU)
    if not all_plain(dict(zip(upscaling, types, strict=True))):
        return False
    up1, up2 = upscaling[0], upscaling[3]
    stock = all(
        m.kernel_size == (2, 2) and m.stride == (2, 2) and m.padding == (0, 0) and m.groups == 1
        for m in (up1, up2)
    )
    return stock and upscaling[2].approximate == "none" and upscaling[4].approximate == "none"


def upscale_masks(
    upscaling: nn.Sequential,
    src: Tensor,
    hyper_in: Tensor,
    size: tuple[int, int],
    high_res: tuple[Tensor, Tensor] | None = None,
    rows: HighResRows | None = None,
) -> Tensor:
    """Image tokens and hypernetwork weights -> low-res mask logits.

    Args:
        upscaling: The decoder's ``output_upscaling`` (called as modules when
            not stock, or when autograd records).
        src: ``BxNxC`` image tokens out of the two-way transformer (``N = h w``).
        hyper_in: ``BxMxC/8`` hypernetwork weights of the ``M`` masks.
        size: ``(h, w)`` of the token grid.
        high_res: ``(feat_s0 (1|B)xC/8x4hx4w, feat_s1 (1|B)xC/4x2hx2w)``, or None
            for a decoder without high-resolution inputs.
        rows: The same features as :func:`high_res_rows` (computed here when
            missing and the fast path runs).

    Returns:
        ``BxMx4hx4w`` logits.
    """
    h, w = size
    B, N, C = src.shape
    M = hyper_in.shape[1]
    grad = torch.is_grad_enabled() and (src.requires_grad or hyper_in.requires_grad)
    if grad or not upscaling_is_plain(upscaling):
        x = src.transpose(1, 2).reshape(B, C, h, w)
        if high_res is None:
            up = upscaling(x)
        else:
            dc1, ln1, act1, dc2, act2 = upscaling
            feat_s0, feat_s1 = high_res
            up = act1(ln1(dc1(x) + feat_s1))
            up = act2(dc2(up) + feat_s0)
        return (hyper_in @ up.flatten(2)).view(B, M, 4 * h, 4 * w)
    if high_res is not None and rows is None:
        rows = high_res_rows(*high_res)
    up1 = cast(nn.ConvTranspose2d, upscaling[0])
    ln = cast(LayerNorm2d, upscaling[1])
    up2 = cast(nn.ConvTranspose2d, upscaling[3])
    c1, c2 = up1.out_channels, up2.out_channels
    kernel1 = up1.weight.permute(2, 3, 1, 0).reshape(4 * c1, C)
    y = tokens_times_weights(src.reshape(B * N, C), kernel1, _repeat4(up1.bias, c1, kernel1))
    if rows is not None:
        y.view(B, 4 * N, c1).add_(rows.s1)
    y = torch.ops.aten.gelu_(F.layer_norm(y.view(-1, c1), (c1,), ln.weight, ln.bias, ln.eps))
    kernel2 = up2.weight.permute(2, 3, 1, 0).reshape(4 * c2, c1)
    z = tokens_times_weights(y, kernel2, _repeat4(up2.bias, c2, kernel2))
    if rows is not None:
        z.view(B, 16 * N, c2).add_(rows.s0)
    z = torch.ops.aten.gelu_(z)
    return masks_from_sub_pixels(z, hyper_in, size)


def _repeat4(bias: Tensor | None, channels: int, like: Tensor) -> Tensor:
    """A transposed convolution's bias for the four sub-pixel offsets (zeros when it has none)."""
    if bias is None:
        return like.new_zeros(4 * channels)
    return bias.repeat(4)
