"""One Hiera block: windowed (or global) multi-head attention with optional query pooling, then an MLP.

Parameter names are those of Meta's ``MultiScaleBlock`` / ``MultiScaleAttention``
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.layers.{0,1}``, and
``proj`` on a block that widens the tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..token_products import linear_on_tokens
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
        stride = self.q_stride
        hq, wq = (H // stride[0], W // stride[1]) if stride is not None else (H, W)
        if self.window_size > 0:
            out = self._windowed(x)  # may cover a padded grid
        else:
            q, k, v = self._project(x)
            o = F.scaled_dot_product_attention(
                _heads(q, self.num_heads), _heads(k, self.num_heads), _heads(v, self.num_heads)
            )
            out = o.transpose(1, 2).reshape(B, hq, wq, self.dim_out)
        # The output projection runs on every token of ``out``, then the padding is cropped.
        return linear(self.proj, out)[:, :hq, :wq]

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (pooled with ``q_stride``), keys and values of ``x`` as ``BxH'xW'xC'`` grids."""
        c = self.dim_out
        if self.q_stride is None:
            q, k, v = linear(self.qkv, x).split(c, dim=-1)
            return q, k, v
        q, kv = self._pooled_queries_and_kv(x)
        k, v = kv.split(c, dim=-1)
        return q, k, v

    def _pooled_queries_and_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled queries ``BxH/sxW/sxC'`` and keys and values packed as ``BxHxWx2C'``."""
        assert self.q_stride is not None
        c = self.dim_out
        if is_plain(self.qkv, nn.Linear):
            # The queries on their own, contiguous: pooling them is then one fast pass.
            w, b = self.qkv.weight, self.qkv.bias
            q = linear_on_tokens(x, w[:c], b[:c] if b is not None else None)
            kv = linear_on_tokens(x, w[c:], b[c:] if b is not None else None)
        else:
            qkv = linear(self.qkv, x)
            q, kv = qkv[..., :c].contiguous(), qkv[..., c:]
        return max_pool(q, self.q_stride), kv

    def _windowed(self, x: Tensor) -> Tensor:
        """Window attention: ``BxHxWxC`` -> ``BxHpxWpxC'`` over the padded (query) grid."""
        B, H, W, _ = x.shape
        win, stride = self.window_size, self.q_stride
        nh, hd, c = self.num_heads, self.dim_out // self.num_heads, self.dim_out
        pad_h, pad_w = (win - H % win) % win, (win - W % win) % win
        hp, wp = H + pad_h, W + pad_w
        nwh, nww = hp // win, wp // win
        fill = self._padding_qkv(x) if pad_h or pad_w else None
        if stride is None:
            qkv = linear(self.qkv, x)
            if fill is not None:
                qkv = _pad_grid(qkv, hp, wp, fill)
            # B x nwh x win x nww x win x 3 x nh x hd -> 3 x (B nwh nww) x nh x (win win) x hd
            windows = qkv.reshape(B, nwh, win, nww, win, 3, nh, hd).permute(5, 0, 1, 3, 6, 2, 4, 7)
            q, k, v = windows.reshape(3, B * nwh * nww, nh, win * win, hd).unbind(0)
            qwin = win
        else:
            if win % stride[0] or win % stride[1] or stride[0] != stride[1]:
                raise ValueError(f"a pooling block needs a window ({win}) that its stride {stride} divides")
            q, kv = self._pooled_queries_and_kv(x)
            if fill is not None:
                kv = _pad_grid(kv, hp, wp, fill[c:])
            windows = kv.reshape(B, nwh, win, nww, win, 2, nh, hd).permute(5, 0, 1, 3, 6, 2, 4, 7)
            k, v = windows.reshape(2, B * nwh * nww, nh, win * win, hd).unbind(0)
            qwin = win // stride[0]
            q = _pad_grid(q, nwh * qwin, nww * qwin, q.new_zeros(c))  # padded queries: outputs dropped
            q = q.reshape(B, nwh, qwin, nww, qwin, nh, hd).permute(0, 1, 3, 5, 2, 4, 6)
            q = q.reshape(B * nwh * nww, nh, qwin * qwin, hd)
        o = F.scaled_dot_product_attention(q, k, v)  # (B nwh nww) x nh x (qwin qwin) x hd
        o = o.view(B, nwh, nww, nh, qwin, qwin, hd).permute(0, 1, 4, 2, 5, 3, 6)
        return o.reshape(B, nwh * qwin, nww * qwin, c)

    def _padding_qkv(self, x: Tensor) -> Tensor:
        """``3C'``: the projection of a zero token (what Meta's zero padding becomes)."""
        if is_plain(self.qkv, nn.Linear):
            if self.qkv.bias is not None:
                return self.qkv.bias.to(x.dtype)
            return x.new_zeros(3 * self.dim_out)
        return self.qkv(x.new_zeros(1, x.shape[-1])).to(x.dtype).view(-1)


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """``BxHxWxC`` grid -> ``B x heads x (H W) x d`` (a view)."""
    B, H, W, C = x.shape
    return x.reshape(B, H * W, num_heads, C // num_heads).transpose(1, 2)


def _pad_grid(x: Tensor, height: int, width: int, fill: Tensor) -> Tensor:
    """``BxHxWxC`` -> ``Bx height x width xC``, the new cells set to ``fill`` (``C``)."""
    B, H, W, C = x.shape
    if (H, W) == (height, width):
        return x
    out = x.new_empty(B, height, width, C)
    out[:, :H, :W] = x
    out[:, H:] = fill
    out[:, :H, W:] = fill
    return out


def max_pool(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """``BxHxWxC`` -> ``Bx(H//s)x(W//s)xC``: max over ``s x s`` cells (``MaxPool2d``, floor mode).

    Runs as ``max_pool2d`` on the channels-last view, one vectorised pass when
    ``x`` is contiguous.
    """
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)


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
                shortcut = max_pool(shortcut, self.q_stride)
        y = self.attn(x)
        x = y.add_(shortcut) if in_place and _is_fresh(y) else y + shortcut
        y = self.mlp(self.norm2(x))
        return y.add_(x) if in_place and _is_fresh(y) else y + x


def _is_fresh(t: Tensor) -> bool:
    """A contiguous tensor that owns its storage from the start (safe to overwrite in place)."""
    return bool(t.is_contiguous() and t.storage_offset() == 0 and t._base is None)
