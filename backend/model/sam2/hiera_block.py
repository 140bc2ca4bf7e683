"""One Hiera block: windowed (or global) multi-head attention with optional query pooling, then an MLP.

Parameter names are those of Meta's ``MultiScaleBlock`` / ``MultiScaleAttention``
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.layers.{0,1}``, and
``proj`` on a block that widens the tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import MLP
from .plain_modules import is_plain, linear


class MultiScaleAttention(nn.Module):
    """Attention over a ``BxHxWxC`` grid, inside ``window_size`` windows or globally (0).

    With ``q_stride`` the queries of each window are max-pooled (the stage
    transition): the output grid is ``H/s x W/s``. As in Meta's Hiera, a grid
    that is not a whole number of windows is padded with zero tokens, whose
    keys and values are the projection of zeros (the bias); their outputs
    are dropped.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        *,
        num_heads: int,
        window_size: int = 0,
        q_stride: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim_out ({dim_out})")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.window_size = window_size
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``BxHxWxC`` (normalised tokens) -> ``BxH'xW'xC_out`` (``H' = H // s`` when pooling)."""
        B, H, W, _ = x.shape
        nh, hd = self.num_heads, self.dim_out // self.num_heads
        qkv = linear(self.qkv, x)  # B x H x W x 3C'
        win = self.window_size
        stride = self.q_stride
        if win > 0:
            out = self._windowed(x, qkv, win, stride)
        else:
            q, k, v = qkv.view(B, H * W, 3, nh, hd).unbind(2)
            if stride is not None:
                q = _max_pool(q.view(B, H, W, nh * hd), stride)
                q = q.view(B, -1, nh, hd)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            hq, wq = (H // stride[0], W // stride[1]) if stride is not None else (H, W)
            out = o.transpose(1, 2).reshape(B, hq, wq, self.dim_out)
        return linear(self.proj, out)

    def _windowed(self, x: Tensor, qkv: Tensor, win: int, stride: tuple[int, int] | None) -> Tensor:
        """Window attention of the projected ``qkv`` (``BxHxWx3C'``) -> ``BxH'xW'xC'``."""
        B, H, W, _ = qkv.shape
        nh, hd, c_out = self.num_heads, self.dim_out // self.num_heads, self.dim_out
        pad_h, pad_w = (win - H % win) % win, (win - W % win) % win
        if pad_h or pad_w:
            # Padded tokens are zeros before the projection: their qkv is the projection of zero.
            if is_plain(self.qkv, nn.Linear) and self.qkv.bias is not None:
                fill = self.qkv.bias.to(qkv.dtype)
            else:
                fill = self.qkv(x.new_zeros(1, x.shape[-1])).to(qkv.dtype).view(3 * c_out)
            padded = fill.expand(B, H + pad_h, W + pad_w, 3 * c_out).contiguous()
            padded[:, :H, :W] = qkv
            qkv = padded
        hp, wp = H + pad_h, W + pad_w
        nwh, nww = hp // win, wp // win
        # B x nwh x win x nww x win x 3 x nh x hd -> 3 x (B nwh nww) x win x win x nh x hd
        windows = qkv.view(B, nwh, win, nww, win, 3, nh, hd).permute(5, 0, 1, 3, 2, 4, 6, 7)
        windows = windows.reshape(3, B * nwh * nww, win, win, nh, hd)
        q, k, v = windows.unbind(0)
        qwin = win
        if stride is not None:
            q = _max_pool(q.reshape(B * nwh * nww, win, win, nh * hd), stride)
            qwin = q.shape[1]
        nwin = B * nwh * nww
        q = q.reshape(nwin, qwin * qwin, nh, hd).transpose(1, 2)
        k = k.reshape(nwin, win * win, nh, hd).transpose(1, 2)
        v = v.reshape(nwin, win * win, nh, hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v)  # nwin x nh x (qwin qwin) x hd
        o = o.view(B, nwh, nww, nh, qwin, qwin, hd).permute(0, 1, 4, 2, 5, 3, 6)
        o = o.reshape(B, nwh * qwin, nww * qwin, c_out)
        hq, wq = (H // stride[0], W // stride[1]) if stride is not None else (H, W)
        return o[:, :hq, :wq]


def _max_pool(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """``BxHxWxC`` -> ``Bx(H//s)x(W//s)xC``: max over ``s x s`` cells (``MaxPool2d`` with floor)."""
    B, H, W, C = x.shape
    sh, sw = stride
    hq, wq = H // sh, W // sw
    x = x[:, : hq * sh, : wq * sw]
    return x.reshape(B, hq, sh, wq, sw, C).amax(dim=(2, 4))


class MultiScaleBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    A block that widens the tokens (``dim != dim_out``, the first of a stage)
    projects its shortcut with ``proj`` and pools it like the queries.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(
            dim, dim_out, num_heads=num_heads, window_size=window_size, q_stride=q_stride
        )
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``BxHxWxC`` -> ``BxH'xW'xC_out`` (``H' = H // s`` for a pooling block)."""
        in_place = not torch.is_grad_enabled()
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = linear(self.proj, x)
            if self.q_stride is not None:
                shortcut = _max_pool(shortcut, self.q_stride)
        y = self.attn(x)
        x = y.add_(shortcut) if in_place and _is_fresh(y) else y + shortcut
        y = self.mlp(self.norm2(x))
        return y.add_(x) if in_place and _is_fresh(y) else y + x


def _is_fresh(t: Tensor) -> bool:
    """A contiguous tensor that owns its storage from the start (safe to overwrite in place)."""
    return bool(t.is_contiguous() and t.storage_offset() == 0 and t._base is None)
