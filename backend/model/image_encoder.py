"""SAM's ViT image encoder (ViT-B/L/H): windowed attention, global blocks,
decomposed relative positions, and a neck to the prompt-embedding width.

Parameter names and shapes are those of Meta's ``ImageEncoderViT`` so that the
official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d, MLPBlock
from .plain_modules import apply_linear, calls_are_plain, projection_of_zeros
from .token_products import add_in_row_chunks, linear_on_tokens

# Global attention is run in chunks of query rows so that the relative-position
# bias (batch x heads x rows x N) never needs more than about this many elements
# (64 Mi: 256 MB in fp32; larger chunks are faster on CPU).
_MAX_BIAS_ELEMENTS = 1 << 26


class ImageEncoderViT(nn.Module):
    """ViT backbone: ``Bx3xSxS`` normalised image -> ``Bx(out_chans)x(S/16)x(S/16)``."""

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: Bx3xSxS, normalised and padded. Returns BxCx(S/16)x(S/16)."""
        x = self.patch_embed(x) + self.pos_embed  # B x H x W x C
        # Without autograd, big scratch tensors are reused across blocks: fresh
        # multi-megabyte allocations cost page faults on every call on CPU.
        ws = Workspace() if not torch.is_grad_enabled() else None
        for blk in self.blocks:
            x = blk(x, ws)
        reduce: nn.Conv2d = self.neck[0]  # type: ignore[assignment]
        if calls_are_plain(reduce):
            # The 1x1 conv on channels-last tokens is a product with the tokens.
            x = linear_on_tokens(x, reduce.weight.flatten(1), None).permute(0, 3, 1, 2)
        else:
            x = reduce(x.permute(0, 3, 1, 2))
        x = self.neck[1](x)
        x = self.neck[2](x.contiguous(memory_format=torch.channels_last))
        return self.neck[3](x).contiguous()


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution, output channels-last ``BxHxWxC``."""

    def __init__(self, *, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size > 0``."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        window_size: int = 0,
        input_size: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            input_size=input_size if window_size == 0 else (window_size, window_size),
            window_size=window_size,
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor, ws: Workspace | None = None) -> torch.Tensor:
        """``x``: BxHxWxC. ``ws``: scratch buffers (inference only)."""
        # The residual sums go into the fresh outputs of the projections.
        x = self.attn(self.norm1(x), ws).add_(x)
        plain = calls_are_plain(self.norm2, self.mlp.lin1, self.mlp.act, self.mlp.lin2)
        if ws is not None and plain and _is_exact_gelu(self.mlp.act) and x.is_contiguous():
            # No autograd (``ws`` is given only then): the MLP half in row chunks, into x.
            return add_in_row_chunks(x, self._normalised_mlp_in_place, self.mlp.lin1.out_features)
        y = self.mlp.act(apply_linear(self.mlp.lin1, self.norm2(x)))
        return apply_linear(self.mlp.lin2, y).add_(x)

    def _normalised_mlp_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """``mlp(norm2(x))`` with the GELU in place on the first layer's fresh output."""
        y = torch.ops.aten.gelu_(apply_linear(self.mlp.lin1, self.norm2(x)))
        return apply_linear(self.mlp.lin2, y)


def _is_exact_gelu(act: nn.Module) -> bool:
    return type(act) is nn.GELU and act.approximate == "none"


class Attention(nn.Module):
    """Multi-head attention over a ``BxHxWxC`` grid with decomposed relative positions.

    With ``window_size > 0`` the grid is zero-padded to a multiple of the window
    and attention runs inside each window (as in SAM, padded tokens take part as
    keys with the projection of a zero vector, i.e. the bias). The qkv and output
    projections are applied to the real tokens only.
    """

    def __init__(
        self, dim: int, *, num_heads: int, input_size: tuple[int, int], window_size: int = 0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor, ws: Workspace | None = None) -> torch.Tensor:
        """``x``: BxHxWxC. ``ws``: scratch buffers (inference only)."""
        B, H, W, C = x.shape
        nh = self.num_heads
        hd = C // nh
        win = self.window_size
        qkv = apply_linear(self.qkv, x)
        if win > 0:
            # Project the real tokens only; padded tokens get the projection of zeros (= bias).
            pad_h = (win - H % win) % win
            pad_w = (win - W % win) % win
            Hp, Wp = H + pad_h, W + pad_w
            if pad_h or pad_w:
                bias = projection_of_zeros(self.qkv, C, qkv)
                if ws is None:
                    keep = torch.zeros((Hp, Wp), dtype=torch.bool, device=qkv.device)
                    keep[:H, :W] = True
                    qkv = torch.where(keep[..., None], F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h)), bias)
                else:
                    padded = ws.get("qkv_pad", (B, Hp, Wp, 3 * C), x)
                    padded[:, :H, :W] = qkv
                    padded[:, H:] = bias
                    padded[:, :H, W:] = bias
                    qkv = padded
            nwh, nww = Hp // win, Wp // win
            # B x nwh x win x nww x win x 3 x nh x hd -> 3 x (B nwh nww) x nh x (win win) x hd
            grid = qkv.view(B, nwh, win, nww, win, 3, nh, hd).permute(5, 0, 1, 3, 6, 2, 4, 7)
            shape = (3, B * nwh * nww, nh, win * win, hd)
            if ws is None:
                qkv = grid.reshape(shape)
            else:
                qkv = ws.get("qkv_windows", shape, x)
                qkv.view(grid.shape).copy_(grid)
            q, k, v = qkv.unbind(0)
            out = _attention_rel_pos(q, k, v, self.rel_pos_h, self.rel_pos_w, (win, win), ws)
            out = out.view(B, nwh, nww, nh, win, win, hd)
            out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(B, Hp, Wp, C)
            if pad_h or pad_w:
                out = out[:, :H, :W]
        else:
            q, k, v = qkv.view(B, H * W, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
            out = _attention_rel_pos(q, k, v, self.rel_pos_h, self.rel_pos_w, (H, W), ws)
            out = out.transpose(1, 2).reshape(B, H, W, C)
        return apply_linear(self.proj, out)


def _attention_rel_pos(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    ws: Workspace | None = None,
) -> torch.Tensor:
    """SDPA with SAM's decomposed relative-position bias as the attention mask.

    ``q, k, v``: B x heads x (h w) x d over an ``h x w`` grid. Returns B x heads x (h w) x d.
    """
    h, w = size
    B, nh, N, d = q.shape
    Rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)  # h x h x d
    Rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)  # w x w x d
    chunks = -(-B * nh * N * N // _MAX_BIAS_ELEMENTS)  # ceil
    rows = -(-h // chunks) * w  # whole grid rows, chunks of about equal size
    if rows >= N:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_rel_pos_bias(q, Rh, Rw, h, w, ws))
    # Large global attention: chunk whole rows of queries to bound the bias memory.
    outs = []
    for start in range(0, N, rows):
        qc = q[:, :, start : start + rows]
        r0, r1 = start // w, (start + qc.shape[2]) // w
        bias = _rel_pos_bias(qc, Rh[r0:r1], Rw, r1 - r0, w, ws)
        outs.append(F.scaled_dot_product_attention(qc, k, v, attn_mask=bias))
    return torch.cat(outs, dim=2)


def _rel_pos_bias(
    q: torch.Tensor, Rh: torch.Tensor, Rw: torch.Tensor, qh: int, w: int, ws: Workspace | None = None
) -> torch.Tensor:
    """Bias ``B x heads x (qh w) x (kh kw)`` for ``qh`` query rows of width ``w``."""
    B, nh, _, d = q.shape
    kh, kw = Rh.shape[1], Rw.shape[1]
    r_q = q.reshape(B * nh, qh, w, d)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh).contiguous()
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw).contiguous()
    if ws is None:
        bias = rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)  # (B nh) x qh x w x kh x kw
    else:
        bias = ws.get("bias", (B * nh, qh, w, kh, kw), q)
        torch.add(rel_h.unsqueeze(-1), rel_w.unsqueeze(-2), out=bias)
    return bias.view(B, nh, qh * w, kh * kw)


class Workspace:
    """Named scratch buffers reused within one inference forward pass.

    ``get`` returns a view of the requested shape on a buffer that is reused
    (grown when needed) for every request of the same name; the caller must be
    done with the previous contents.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._buffers[name] = buf
        return buf[:numel].view(shape)


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings ``q_size x k_size x C`` (interpolated if needed)."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        rel_pos = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        )
        rel_pos = rel_pos.reshape(-1, max_rel_dist).permute(1, 0)
    device = rel_pos.device
    q_coords = torch.arange(q_size, device=device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=device)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative_coords.long()]
