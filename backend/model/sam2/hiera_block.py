"""One Hiera block: windowed (or global) multi-head attention with optional query pooling, then an MLP.

Parameter names are those of Meta's ``MultiScaleBlock`` / ``MultiScaleAttention``
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.layers.{0,1}``, and
``proj`` on a block that widens the tokens).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..token_products import add_in_row_chunks, linear_on_tokens
from .mlp import MLP
from .plain_modules import all_plain, is_plain, linear


class MultiScaleAttention(nn.Module):
    """Attention over a ``BxHxWxC`` grid, inside ``window_size`` windows or globally (0).

    As in Meta's Hiera, a grid that is not a whole number of windows is padded
    with zero tokens (which take part as keys and values through the
    projections of zero); their outputs are dropped. With ``q_stride`` the
    queries of each window are max-pooled (the stage transition): the output
    grid is ``H/s x W/s``.

    The grid is cut into windows once, before the projections (the copy then
    moves the narrow input rather than the three times wider ``qkv``); queries,
    keys and values go to attention as strided views of the projection.
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
        if q_stride is not None and window_size and (window_size % q_stride[0] or window_size % q_stride[1]):
            raise ValueError(
                f"a pooling block needs a window ({window_size}) that its stride {q_stride} divides"
            )
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
        win = self.window_size
        if win > 0:
            windows, (nwh, nww) = to_windows(x, win)
            o, qwin = self._attend_windows(windows, win)
            out = from_windows(o, B, nwh, nww, qwin, qwin)  # the padded grid
        else:
            o, _ = self._attend(x, H, W)
            out = o.transpose(1, 2).reshape(B, hq, wq, self.dim_out)
        # The padding is cropped before the output projection (no products for dropped tokens).
        return linear(self.proj, out[:, :hq, :wq])

    def _attend_windows(self, windows: Tensor, win: int) -> tuple[Tensor, int]:
        """:meth:`_attend` over ``N x win x win x C`` windows, a group of windows at a time
        without autograd, so that their queries, keys and values (three times the
        output's width: 75 MB of float32 on hiera's stride-4 grid) never exist for
        all windows at once (see :func:`~backend.model.token_products.add_in_row_chunks`)."""
        n = windows.shape[0]
        per_window = win * win * 3 * self.dim_out * windows.element_size()
        group = max(1, ATTENTION_GROUP_BYTES // per_window)
        if torch.is_grad_enabled() or group >= n or not is_plain(self.qkv, nn.Linear):
            return self._attend(windows, win, win)  # a hook or an adapter sees the whole projection
        parts = [self._attend(windows[start : start + group], win, win) for start in range(0, n, group)]
        return torch.cat([o for o, _ in parts]), parts[0][1]

    def _attend(self, x: Tensor, h: int, w: int) -> tuple[Tensor, int]:
        """Attention inside each ``h x w`` item of ``x`` (``N x h x w x C``: windows, or the grid).

        Returns ``N x heads x (h' w') x d`` and ``h'`` (``h // s`` when pooling).
        """
        n = x.shape[0]
        nh, hd = self.num_heads, self.dim_out // self.num_heads
        stride = self.q_stride
        if stride is None:
            qkv = linear(self.qkv, x).reshape(n, h * w, 3, nh, hd)
            q, k, v = qkv.unbind(2)
            hq = h
        else:
            q, kv = self._queries_and_kv(x)
            q = max_pool(q, stride)  # N x h/s x w/s x C'
            hq = q.shape[1]
            q = q.reshape(n, hq * q.shape[2], nh, hd)
            k, v = kv.reshape(n, h * w, 2, nh, hd).unbind(2)
        return attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), hq

    def _queries_and_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Queries ``...xC'`` (contiguous, for pooling) and keys and values packed as ``...x2C'``."""
        c = self.dim_out
        if is_plain(self.qkv, nn.Linear):
            w, b = self.qkv.weight, self.qkv.bias
            q = linear_on_tokens(x, w[:c], b[:c] if b is not None else None)
            kv = linear_on_tokens(x, w[c:], b[c:] if b is not None else None)
            return q, kv
        qkv = linear(self.qkv, x)
        return qkv[..., :c].contiguous(), qkv[..., c:]


ATTENTION_GROUP_BYTES = 16 << 20
"""Size of the projected queries, keys and values of one group of windows in
:meth:`MultiScaleAttention._attend_windows`."""

ATTENTION_CHUNK_ELEMENTS = 1 << 22
"""Scores per chunk of queries in :func:`attention`'s bfloat16 path (8 MiB)."""


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``B x heads x T x d`` (strided views allowed).

    PyTorch's fused kernel, except in bfloat16 on a CPU without autograd: that
    kernel computes it in float32 blocks, no faster than float32, while two
    bfloat16 matrix products around a softmax (in chunks of queries whose
    scores stay cache-sized) run faster (`docs/models.md`): up to twice for the
    global blocks and the 14x14 windows, 1.3-1.6x for the 4x4 and 8x8 windows;
    the 7x7 windows and the pooling blocks' windows take the same path.
    float16 keeps the fused kernel: a CPU without native float16 products
    (this x86 one) runs them 1.4-9x slower than the kernel.
    """
    if q.dtype != torch.bfloat16 or q.device.type != "cpu" or torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    # With several chunks the keys and values are made contiguous once (a product on a
    # strided view copies it on every call); with one (the windows) nothing more is
    # copied: the products read one head's keys as a strided view, and the reshape has
    # already gathered several heads'. The scale goes on the queries, a chunk at a time
    # (a pass over few values, not over the scores); each chunk's output is written in place.
    qf = q.reshape(b * h, tq, d)
    kt = k.reshape(b * h, tk, d).transpose(1, 2)
    vf = v.reshape(b * h, tk, d)
    scale = d**-0.5
    rows = max(1, ATTENTION_CHUNK_ELEMENTS // (b * h * tk))
    if rows < tq:
        kt, vf = kt.contiguous(), vf.contiguous()
    out = q.new_empty(b * h, tq, d)
    for start in range(0, tq, rows):
        scores = torch.bmm(qf[:, start : start + rows] * scale, kt)
        torch.bmm(torch.softmax(scores, dim=-1), vf, out=out[:, start : start + rows])
    return out.view(b, h, tq, d)


def to_windows(x: Tensor, win: int) -> tuple[Tensor, tuple[int, int]]:
    """``BxHxWxC`` -> ``(B nwh nww) x win x win x C`` windows (zero-padded to whole windows; a copy)
    and the window counts ``(nwh, nww)``."""
    B, H, W, C = x.shape
    pad_h, pad_w = (win - H % win) % win, (win - W % win) % win
    nwh, nww = (H + pad_h) // win, (W + pad_w) // win
    if pad_h or pad_w:
        grid = x.new_zeros(B, H + pad_h, W + pad_w, C)
        grid[:, :H, :W] = x
        x = grid
    windows = x.view(B, nwh, win, nww, win, C).transpose(2, 3).reshape(B * nwh * nww, win, win, C)
    return windows, (nwh, nww)


def from_windows(o: Tensor, batch: int, nwh: int, nww: int, h: int, w: int) -> Tensor:
    """Attention output ``(B nwh nww) x heads x (h w) x d`` -> the ``B x nwh h x nww w x C`` grid (a copy)."""
    nh, hd = o.shape[1], o.shape[3]
    grid = o.view(batch, nwh, nww, nh, h, w, hd).permute(0, 1, 4, 2, 5, 3, 6)
    return grid.reshape(batch, nwh * h, nww * w, nh * hd)


def max_pool(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """``BxHxWxC`` -> ``Bx(H//s)x(W//s)xC``: max over ``s x s`` cells (``MaxPool2d``, floor mode).

    Without autograd, elementwise maxima of strided views (rows, then columns):
    each pass reads whole channel vectors, two to three times faster than
    ``max_pool2d`` on the channels-last grid, with the same values (NaN
    propagates alike). With autograd, ``max_pool2d`` (its gradient goes to one
    element of a tie, as the reference's).
    """
    sh, sw = stride
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)
    x = x[:, : x.shape[1] // sh * sh, : x.shape[2] // sw * sw]
    rows = x[:, 0::sh]
    for i in range(1, sh):
        rows = torch.maximum(rows, x[:, i::sh])
    out = rows[:, :, 0::sw]
    for j in range(1, sw):
        out = torch.maximum(out, rows[:, :, j::sw])
    return out


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
        if in_place and self._may_use_slabs(x):
            x = self._attention_half_in_slabs(x)
        else:
            x = self._attention_half(x, self.norm1(x))
        if in_place and _is_fresh(x) and self._mlp_is_plain():
            return self._add_mlp_in_row_chunks(x)
        y = self.mlp(self.norm2(x))
        return y.add_(x) if in_place and _is_fresh(y) else y + x

    def _attention_half(self, x: Tensor, normed: Tensor, out: Tensor | None = None) -> Tensor:
        """``shortcut(x) + attn(normed)`` for ``normed = norm1(x)`` (``BxHxWxC`` -> ``BxH'xW'xC_out``),
        written into ``out`` when given."""
        shortcut = x
        if self.dim != self.dim_out:
            shortcut = linear(self.proj, normed)
            if self.q_stride is not None:
                shortcut = max_pool(shortcut, self.q_stride)
        y = self.attn(normed)
        if out is not None:
            return torch.add(y, shortcut, out=out)
        return y.add_(shortcut) if not torch.is_grad_enabled() and _is_fresh(y) else y + shortcut

    def _may_use_slabs(self, x: Tensor) -> bool:
        """A windowed block with stock modules, on a CPU (where slabs keep the temporaries in
        the cache and out of fresh pages; on a GPU they would only add kernel launches),
        outside autocast (whose output dtype the slabs' shared output could not follow)."""
        if self.window_size <= 0 or x.device.type != "cpu" or x.numel() == 0:
            return False
        return not torch.is_autocast_enabled(x.device.type) and self._attention_is_plain()

    def _attention_is_plain(self) -> bool:
        modules: dict[nn.Module, type[nn.Module]] = {
            self.norm1: nn.LayerNorm,
            self.attn: MultiScaleAttention,
            self.attn.qkv: nn.Linear,
            self.attn.proj: nn.Linear,
        }
        if self.dim != self.dim_out:
            modules[self.proj] = nn.Linear
        return all_plain(modules)

    def _attention_half_in_slabs(self, x: Tensor) -> Tensor:
        """:meth:`_attention_half` of a windowed block, a slab of whole window rows at a time,
        into one output tensor (see :meth:`_may_use_slabs`).

        Windows never straddle slabs and a slab starts on a window (and pooling
        cell) boundary, so each slab's windows, padding, pooling and crop are
        those of the whole grid. The normalised grid, its windows, the
        attention output and the output projection then exist one slab at a
        time (cache-sized, reused from the heap) instead of as four full-size
        temporaries per call (25 MB each on hiera's stride-4 grid in float32).
        """
        B, H, W, _ = x.shape
        sh, sw = self.q_stride or (1, 1)
        win = self.window_size
        padded_width = -(-W // win) * win
        window_row_bytes = B * win * padded_width * 3 * self.dim_out * x.element_size()
        rows = max(1, ATTENTION_GROUP_BYTES // window_row_bytes) * win
        if rows >= H:
            return self._attention_half(x, self.norm1(x))
        out = x.new_empty(B, H // sh, W // sw, self.dim_out)
        for start in range(0, H, rows):
            slab = x[:, start : start + rows]
            first = start // sh
            self._attention_half(slab, self.norm1(slab), out[:, first : first + slab.shape[1] // sh])
        return out

    def _mlp_is_plain(self) -> bool:
        layers = self.mlp.layers
        return all_plain(
            {self.norm2: nn.LayerNorm, self.mlp: MLP, layers[0]: nn.Linear, layers[1]: nn.Linear}
        )

    def _add_mlp_in_row_chunks(self, x: Tensor) -> Tensor:
        """``x + mlp(norm2(x))`` written into ``x`` (owned by this block) in row chunks."""
        hidden = cast(nn.Linear, self.mlp.layers[0]).out_features
        return add_in_row_chunks(x, lambda part: self.mlp(self.norm2(part)), hidden)


def _is_fresh(t: Tensor) -> bool:
    """A contiguous tensor that owns its storage from the start (safe to overwrite in place)."""
    return bool(t.is_contiguous() and t.storage_offset() == 0 and t._base is None)
