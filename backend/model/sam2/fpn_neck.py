"""SAM 2's feature-pyramid neck: a 1x1 lateral convolution per trunk stage, plus a top-down path.

Parameter names are those of Meta's ``FpnNeck`` (``convs.N.conv``; ``convs.0``
takes the lowest-resolution stage). The sine position encodings Meta's neck
also returns feed only the video memory and are not computed here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..token_products import linear_on_tokens
from .plain_modules import conv1x1_as_linear


class FpnNeck(nn.Module):
    """Trunk maps (highest resolution first) -> ``d_model``-wide maps at the same resolutions.

    Level ``i`` is ``lateral_i(x_i)``, plus the 2x-upsampled level ``i + 1``
    when ``i`` is in ``top_down_levels``.
    """

    def __init__(
        self,
        *,
        d_model: int,
        backbone_channel_list: list[int],
        top_down_levels: tuple[int, ...] = (2, 3),
        interp_mode: str = "nearest",
    ) -> None:
        super().__init__()
        if interp_mode not in ("nearest", "bilinear"):
            raise ValueError(f"interp_mode must be 'nearest' or 'bilinear', got {interp_mode!r}")
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(dim, d_model, kernel_size=1)))
            for dim in backbone_channel_list
        )
        self.top_down_levels = tuple(top_down_levels)
        self.interp_mode = interp_mode

    def lateral(self, level: int, x: Tensor, post: nn.Module | None = None) -> Tensor:
        """``post(lateral_level(x))`` for a ``BxCxHxW`` map -> ``Bxd_modelxHxW`` (channels-last memory).

        Both 1x1 convolutions are one product with the tokens when they are
        stock layers (``post`` folded into the lateral weights); otherwise the
        modules are called.
        """
        conv = cast(nn.Sequential, self.convs[len(self.convs) - 1 - level])
        lateral = conv1x1_as_linear(conv[0]) if len(conv) == 1 else None
        folded = lateral
        if post is not None and lateral is not None:
            after = conv1x1_as_linear(post)
            if after is None:
                folded = None
            else:
                folded = _compose(after, lateral)
        if folded is None:
            y = conv(x)
            return post(y) if post is not None else y
        weight, bias = folded
        tokens = x.permute(0, 2, 3, 1)  # a free view of a channels-last map
        return linear_on_tokens(tokens, weight, bias).permute(0, 3, 1, 2)

    def forward(self, xs: list[Tensor], post: dict[int, nn.Module] | None = None) -> list[Tensor]:
        """``xs``: one ``BxC_ixH_ixW_i`` map per trunk stage, highest resolution first.

        Args:
            xs: The trunk's outputs.
            post: Optional 1x1 convolutions applied to some levels' outputs
                (``{0: conv_s0, 1: conv_s1}`` for the decoder's high-resolution
                inputs); a level whose output feeds no top-down sum gets it
                folded into its lateral convolution.

        Returns:
            One map per level, highest resolution first (after ``post``).
        """
        if len(xs) != len(self.convs):
            raise ValueError(f"expected {len(self.convs)} feature maps, got {len(xs)}")
        post = post or {}
        out: list[Tensor | None] = [None] * len(xs)
        previous: Tensor | None = None
        for i in range(len(xs) - 1, -1, -1):
            feeds_next = i - 1 in self.top_down_levels
            fold = i in post and not feeds_next and i not in self.top_down_levels
            level = self.lateral(i, xs[i], post[i] if fold else None)
            if i in self.top_down_levels and previous is not None:
                level = self._add_top_down(level, previous)
            previous = level
            out[i] = level if fold or i not in post else post[i](level)
        return [o for o in out if o is not None]

    def _add_top_down(self, lateral: Tensor, coarse: Tensor) -> Tensor:
        """``lateral + upsample2x(coarse)`` (nearest: a broadcast add, no upsampled copy)."""
        B, C, H, W = lateral.shape
        if (
            self.interp_mode == "nearest"
            and not torch.is_grad_enabled()
            and lateral.dtype == coarse.dtype
            and coarse.shape[-2:] == (H // 2, W // 2)
            and H % 2 == 0
            and W % 2 == 0
        ):
            target = lateral.permute(0, 2, 3, 1)  # B x H x W x C, in place on the fresh lateral map
            if target.is_contiguous():
                small = coarse.permute(0, 2, 3, 1)
                target.view(B, H // 2, 2, W // 2, 2, C).add_(small[:, :, None, :, None, :])
                return lateral
        # Meta's neck upsamples in float32.
        up = F.interpolate(
            coarse.float(),
            scale_factor=2.0,
            mode=self.interp_mode,
            align_corners=None if self.interp_mode == "nearest" else False,
        )
        return lateral + up.to(lateral.dtype)


def _compose(
    after: tuple[Tensor, Tensor | None], before: tuple[Tensor, Tensor | None]
) -> tuple[Tensor, Tensor]:
    """The affine map ``after(before(x))`` as one ``(weight, bias)``, computed in float32."""
    w2, b2 = after
    w1, b1 = before
    dtype = w1.dtype
    weight = w2.float() @ w1.float()
    bias = w2.float() @ b1.float() if b1 is not None else torch.zeros(w2.shape[0], device=w2.device)
    if b2 is not None:
        bias = bias + b2.float()
    return weight.to(dtype), bias.to(dtype)
