"""The Segment Anything network: ViT-B/L/H and TinyViT image encoders, prompt
encoder, two-way transformer and mask decoder, with the official checkpoints'
state-dict layout.

``build_sam(config)`` builds a :class:`Sam` from a :class:`SamConfig`;
``VIT_B``, ``VIT_L``, ``VIT_H`` and ``VIT_T`` are the official configurations.
"""

from .config import VIT_B, VIT_H, VIT_L, VIT_T, SamConfig, TinyViTConfig, ViTConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import DecodedCandidates, DecoderImageCache, MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam, build_sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = [
    "VIT_B",
    "VIT_H",
    "VIT_L",
    "VIT_T",
    "DecodedCandidates",
    "DecoderImageCache",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "SamConfig",
    "TinyViT",
    "TinyViTConfig",
    "TwoWayTransformer",
    "ViTConfig",
    "build_sam",
]
