"""The Hiera trunk of SAM 2.1: a 4x patch embedding and four stages of :class:`MultiScaleBlock`.

Parameter names are those of Meta's ``hieradet.Hiera`` (``patch_embed.proj``,
``pos_embed``, ``pos_embed_window``, ``blocks.N.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..memo import MemoOnWeights
from .config import HieraConfig
from .hiera_block import MultiScaleBlock
from .plain_modules import is_plain


class PatchEmbed(nn.Module):
    """7x7, stride-4 convolution: ``Bx3xSxS`` -> ``Bx(S/4)x(S/4)xC`` (channels last)."""

    def __init__(self, *, in_chans: int = 3, embed_dim: int = 96) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        # A channels-last input gives a channels-last output: the permute is then free.
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        return x.permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """Hierarchical ViT: ``Bx3xSxS`` normalised image -> one feature map per stage.

    Stage ``i`` has width ``embed_dim * 2^i`` on an ``S / 2^(i+2)`` grid. Each
    stage's first block pools the queries (2x2) and widens the tokens; blocks
    listed in ``global_att_blocks`` attend globally, the others inside
    windows (``window_spec``; a stage's first block uses the previous stage's
    window).
    """

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        c = config
        if len(c.stages) != len(c.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        if not 0 <= c.q_pool <= len(c.stages) - 1:
            raise ValueError(f"q_pool must be between 0 and {len(c.stages) - 1}")
        self.config = c
        self.stage_ends = c.stage_ends
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][: c.q_pool]
        self.patch_embed = PatchEmbed(embed_dim=c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.embed_dim, *c.window_pos_embed_bkg_spatial_size))
        first = c.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, c.embed_dim, first, first))
        self.blocks = nn.ModuleList()
        dim, heads, stage = c.embed_dim, c.num_heads, 0
        for i in range(sum(c.stages)):
            # The window lags by a block: a stage's first block uses the previous stage's.
            window = 0 if i in c.global_att_blocks else c.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * c.dim_mul)
                heads = int(heads * c.head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    num_heads=heads,
                    mlp_ratio=c.mlp_ratio,
                    q_stride=tuple(c.q_stride) if i in q_pool_blocks else None,  # type: ignore[arg-type]
                    window_size=window,
                )
            )
            dim = dim_out
        self.channel_list: list[int] = c.channel_list
        self._pos_memo: MemoOnWeights[Tensor] = MemoOnWeights()

    def position_embedding(self, size: tuple[int, int]) -> Tensor:
        """``1xHxWxC`` position embedding of the stage-1 grid: the background embedding
        resized (bicubic) plus the window embedding tiled. Memoised per size and weights."""
        if torch.is_grad_enabled() and (self.pos_embed.requires_grad or self.pos_embed_window.requires_grad):
            return self._position_embedding(size)
        return self._pos_memo.get(
            tuple(size),
            (self.pos_embed, self.pos_embed_window),
            lambda: self._position_embedding(size).contiguous(),
        )

    def _position_embedding(self, size: tuple[int, int]) -> Tensor:
        h, w = size
        window = self.pos_embed_window
        if h % window.shape[-2] or w % window.shape[-1]:
            raise ValueError(
                f"the stage-1 grid {h}x{w} must be a whole number of {window.shape[-1]}-token windows; "
                "use an image size that is a multiple of 32"
            )
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        pos = pos + window.tile(1, 1, h // window.shape[-2], w // window.shape[-1])
        return pos.permute(0, 2, 3, 1)

    def _patch_embed_is_plain(self) -> bool:
        return is_plain(self.patch_embed, PatchEmbed) and is_plain(self.patch_embed.proj, nn.Conv2d)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: ``Bx3xSxS`` -> four ``BxC_ixH_ixW_i`` maps, highest resolution first
        (channels-last memory, as Meta's trunk returns them)."""
        x = self.patch_embed(x)
        pos = self.position_embedding((x.shape[1], x.shape[2]))
        # Without autograd the sum goes into the convolution's fresh output, unless a hook
        # may hold on to that output or autocast made it another dtype.
        in_place = not torch.is_grad_enabled() and x.dtype == pos.dtype and self._patch_embed_is_plain()
        x = x.add_(pos) if in_place else x + pos
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
