"""A tiny SAM 3 with random weights, saved as the Hub's ``facebook/sam3`` is laid out (no download).

``facebook/sam3`` is a ``sam3_video`` checkpoint: ``detector_model.*`` (read
by ``Sam3Model``), ``tracker_model.*`` and ``tracker_neck.*`` (read with the
detector's ViT by ``Sam3TrackerModel``), plus the processor and CLIP tokenizer
files. The weights are written with their module names, as on the Hub
(transformers 5.25's ``Sam3VideoModel.save_pretrained`` writes the tracker
keys with a doubled ``tracker_model.`` prefix that its own tracker cannot read).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

IMAGE_SIZE = 112
"""Model input side in pixels (8x8 patches of 14)."""
GRID = IMAGE_SIZE // 14
NUM_QUERIES = 8
MASK_SIDE = 4 * GRID
"""Side of the low-res masks (detector and tracker)."""


def tiny_video_config() -> Any:
    """A ``Sam3VideoConfig`` with every part a few channels wide."""
    from transformers import Sam3VideoConfig

    backbone = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": 56,
    }
    vision = {
        "model_type": "sam3_vision_model",
        "backbone_config": backbone,
        "fpn_hidden_size": 32,
        "backbone_feature_sizes": [[4 * GRID, 4 * GRID], [2 * GRID, 2 * GRID], [GRID, GRID]],
    }
    text = {
        "model_type": "clip_text_model",
        "vocab_size": 2 + 2 * len(string.ascii_lowercase),
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
    }
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    detector = {
        "vision_config": vision,
        "text_config": text,
        "geometry_encoder_config": {**small, "num_layers": 1, "roi_size": 2},
        "detr_encoder_config": {**small, "num_layers": 1},
        "detr_decoder_config": {**small, "num_layers": 1, "num_queries": NUM_QUERIES},
        "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2, "num_upsampling_stages": 2},
    }
    tracker = {
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": 32, "image_size": IMAGE_SIZE, "patch_size": 14},
        "mask_decoder_config": {
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        "memory_attention_hidden_size": 32,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_encoder_hidden_size": 32,
        "memory_encoder_output_channels": 16,
        "mask_downsampler_embed_dim": 32,
        "memory_fuser_embed_dim": 32,
        "memory_fuser_intermediate_dim": 64,
        "memory_attention_rope_feat_sizes": [GRID, GRID],
        "image_size": IMAGE_SIZE,
    }
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=MASK_SIDE)


def tiny_processor() -> Any:
    """``Sam3Processor`` at the tiny size, with a CLIP tokenizer over single letters."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for letter in string.ascii_lowercase:
            vocab[letter + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = Sam3ImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, mask_size={"height": MASK_SIDE, "width": MASK_SIDE}
    )
    return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)


def save_tiny_sam3(folder: Path, *, seed: int = 0) -> Any:
    """Write a tiny random SAM 3 to ``folder`` in the Hub's layout; returns the ``Sam3VideoModel``."""
    from safetensors.torch import save_file
    from transformers import Sam3VideoModel

    torch.manual_seed(seed)
    model = Sam3VideoModel(tiny_video_config()).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return model
