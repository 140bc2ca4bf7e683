"""Architecture configurations of the Segment Anything network.

A :class:`SamConfig` fully describes one network: which image encoder, its
size, and the prompt-encoder / mask-decoder widths. ``build_sam(config)``
turns it into a module whose state-dict layout matches Meta's official
checkpoints for the official configurations, and that can be made as small
as tests need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EncoderKind = Literal["vit", "tiny_vit"]


@dataclass(frozen=True, kw_only=True)
class ViTConfig:
    """A plain ViT image encoder with windowed attention (SAM's ViT-B/L/H).

    Attributes:
        embed_dim: Token width.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        global_attn_indexes: Blocks that attend globally; all others use
            ``window_size`` x ``window_size`` windows.
        window_size: Side of the attention windows, in patches.
        patch_size: Side of a patch, in pixels.
        mlp_ratio: MLP hidden width / ``embed_dim``.
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0


@dataclass(frozen=True, kw_only=True)
class TinyViTConfig:
    """MobileSAM's TinyViT image encoder (four stages, the first convolutional).

    Attributes:
        embed_dims: Width of each stage.
        depths: Blocks per stage.
        num_heads: Attention heads per stage (stage 0 is convolutional; its
            value is kept for the official layout only).
        window_sizes: Attention window side per stage, in tokens.
        mlp_ratio: MLP hidden width / stage width.
        mbconv_expand_ratio: Expansion of the MBConv blocks of stage 0.
        local_conv_size: Kernel side of the depth-wise convolution after
            each attention block.
        num_classes: Width of the (unused at inference) classification head,
            kept so that official checkpoints load with ``strict=True``.
    """

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    num_classes: int = 1000


@dataclass(frozen=True, kw_only=True)
class SamConfig:
    """One complete SAM network.

    Attributes:
        encoder: ``"vit"`` (SAM) or ``"tiny_vit"`` (MobileSAM).
        vit: ViT settings, used when ``encoder == "vit"``.
        tiny_vit: TinyViT settings, used when ``encoder == "tiny_vit"``.
        image_size: Side of the square model input, in pixels (1024 for the
            official models). The image embedding grid is
            ``image_size // 16`` on each side (``image_size // patch_size``
            for a ViT) and the low-res mask side is four times that.
        prompt_embed_dim: Width of prompt tokens and of the image embedding.
        mask_in_chans: Hidden channels of the dense mask-prompt downscaler.
        decoder_depth: Two-way transformer blocks in the mask decoder.
        decoder_mlp_dim: MLP hidden width inside the two-way transformer.
        decoder_num_heads: Attention heads inside the two-way transformer.
        iou_head_depth: Layers of the IoU prediction MLP.
        iou_head_hidden_dim: Hidden width of the IoU prediction MLP.
        num_multimask_outputs: Candidate masks for an ambiguous prompt (3).
        pixel_mean: Per-channel RGB mean on the 0..255 scale.
        pixel_std: Per-channel RGB standard deviation on the 0..255 scale.
    """

    encoder: EncoderKind = "vit"
    vit: ViTConfig = field(default_factory=ViTConfig)
    tiny_vit: TinyViTConfig = field(default_factory=TinyViTConfig)
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid (64 for 1024-pixel inputs).

        A ViT's grid is one token per patch; TinyViT always downsamples 16x.
        """
        stride = self.vit.patch_size if self.encoder == "vit" else 16
        return self.image_size // stride

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (256 for 1024-pixel inputs)."""
        return 4 * self.embedding_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form, stored inside checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        data = dict(data)
        vit = ViTConfig(**_tuples(data.pop("vit", {})))
        tiny = TinyViTConfig(**_tuples(data.pop("tiny_vit", {})))
        return cls(vit=vit, tiny_vit=tiny, **_tuples(data))


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; turn them back so configs stay hashable."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


VIT_B = SamConfig(
    encoder="vit", vit=ViTConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
)
VIT_L = SamConfig(
    encoder="vit", vit=ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
)
VIT_H = SamConfig(
    encoder="vit", vit=ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
)
VIT_T = SamConfig(encoder="tiny_vit", tiny_vit=TinyViTConfig())
