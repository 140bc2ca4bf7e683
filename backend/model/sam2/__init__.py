"""The SAM 2.1 image network: Hiera trunk, FPN neck, prompt encoder and mask decoder with
high-resolution inputs, with Meta's checkpoint layout (``{"model": state_dict}`` in
``sam2.1_hiera_*.pt``; the video-memory keys are skipped).

``build_sam2(config)`` builds a :class:`Sam2`; ``sam2_config(name)`` gives an
official configuration and ``sam2_config_from_state_dict`` recognises one from
the weights; ``load_sam2_state_dict`` loads a checkpoint.
"""

from .config import (
    SAM2_1_HIERA_B_PLUS,
    SAM2_1_HIERA_L,
    SAM2_1_HIERA_S,
    SAM2_1_HIERA_T,
    SAM2_CONFIGS,
    HieraConfig,
    Sam2Config,
    sam2_config,
    sam2_config_from_state_dict,
)
from .fpn_neck import FpnNeck
from .hiera import Hiera
from .image_encoder import Sam2ImageEncoder
from .image_features import Sam2ImageFeatures
from .mask_decoder import Sam2DecoderCache, Sam2DecoderOutput, Sam2MaskDecoder
from .prompt_encoder import Sam2PromptEncoder
from .sam2 import VIDEO_ONLY_PREFIXES, LoadReport, Sam2, build_sam2, load_sam2_state_dict
from .transformer import Sam2TwoWayTransformer

__all__ = [
    "SAM2_1_HIERA_B_PLUS",
    "SAM2_1_HIERA_L",
    "SAM2_1_HIERA_S",
    "SAM2_1_HIERA_T",
    "SAM2_CONFIGS",
    "VIDEO_ONLY_PREFIXES",
    "FpnNeck",
    "Hiera",
    "HieraConfig",
    "LoadReport",
    "Sam2",
    "Sam2Config",
    "Sam2DecoderCache",
    "Sam2DecoderOutput",
    "Sam2ImageEncoder",
    "Sam2ImageFeatures",
    "Sam2MaskDecoder",
    "Sam2PromptEncoder",
    "Sam2TwoWayTransformer",
    "build_sam2",
    "load_sam2_state_dict",
    "sam2_config",
    "sam2_config_from_state_dict",
]
