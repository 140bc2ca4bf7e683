"""MobileSAM's TinyViT image encoder ("vit_t").

Parameter names and shapes follow ``mobile_sam/modeling/tiny_vit_sam.py`` so that
the official ``mobile_sam.pt`` loads with ``strict=True`` -- including the unused
classification head (``norm_head``, ``head``). Four stages: a convolutional
stage (MBConv blocks) and three windowed-attention stages; the last patch
merging keeps the resolution, so the output grid is the input side / 16.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .plain_modules import apply_linear


class Conv2d_BN(nn.Sequential):  # noqa: N801 - official checkpoint name
    """Convolution without bias followed by BatchNorm (``c``, ``bn``)."""

    def __init__(
        self,
        a: int,
        b: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, 1, groups, bias=False))
        bn = nn.BatchNorm2d(b)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: input side / 4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depth-wise, 1x1 project)."""

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depth-wise conv (stride ``stride``), 1x1 conv; returns ``BxNxC`` tokens."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            H, W = self.input_resolution
            x = x.view(x.shape[0], H, W, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then patch merging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class Mlp(nn.Module):
    """Pre-norm MLP (``norm``, ``fc1``, GELU, ``fc2``)."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(apply_linear(self.fc1, self.norm(x)))
        return apply_linear(self.fc2, hidden)


class Attention(nn.Module):
    """Pre-norm window attention with a learned bias per head and |offset| (LeViT style)."""

    attention_bias_idxs: torch.Tensor

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.d = key_dim  # attn_ratio = 1
        self.dh = key_dim * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs",
            torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: B x N x C tokens of one window each."""
        B, N, _ = x.shape
        qkv = apply_linear(self.qkv, self.norm(x))
        qkv = qkv.view(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        out = out.transpose(1, 2).reshape(B, N, self.dh)
        return apply_linear(self.proj, out)


class TinyViTBlock(nn.Module):
    """Window attention, depth-wise local convolution, MLP."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(
            dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.input_resolution
        B, L, C = x.shape
        ws = self.window_size
        if H == ws and W == ws:
            y = self.attn(x)
        else:
            y = x.view(B, H, W, C)
            pad_b = (ws - H % ws) % ws
            pad_r = (ws - W % ws) % ws
            if pad_b or pad_r:
                y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
            pH, pW = H + pad_b, W + pad_r
            nH, nW = pH // ws, pW // ws
            y = y.view(B, nH, ws, nW, ws, C).transpose(2, 3).reshape(B * nH * nW, ws * ws, C)
            y = self.attn(y)
            y = y.view(B, nH, nW, ws, ws, C).transpose(2, 3).reshape(B, pH, pW, C)
            if pad_b or pad_r:
                y = y[:, :H, :W]
            y = y.reshape(B, L, C)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(B, C, H, W))
        x = x.view(B, C, L).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """One attention stage: TinyViT blocks then (optional) patch merging."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """TinyViT backbone: ``Bx3xSxS`` -> ``Bx(out_chans)x(S/16)x(S/16)``."""

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if len(embed_dims) != 4 or len(depths) != 4:
            raise ValueError("TinyViT has exactly four stages")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = img_size // 4
        self.layers = nn.ModuleList()
        for i in range(4):
            # Stages 0..2 end with a stride-2 merge, the last merge (into stage 3) keeps the size.
            stage_res = res // (2 ** min(i, 2))
            downsample = None
            if i < 3:
                downsample = PatchMerging(
                    (stage_res, stage_res), embed_dims[i], embed_dims[i + 1], stride=1 if i == 2 else 2
                )
            if i == 0:
                layer: nn.Module = ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, downsample)
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    (stage_res, stage_res),
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    downsample,
                )
            self.layers.append(layer)
        self.out_size = res // 4
        # Unused at inference; kept for the official checkpoint layout.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: Bx3xSxS, normalised and padded. Returns BxCx(S/16)x(S/16)."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        B, _, C = x.shape
        x = x.view(B, self.out_size, self.out_size, C).permute(0, 3, 1, 2)
        return self.neck(x)
