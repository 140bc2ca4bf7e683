"""Build Meta's reference networks (test-only) from our SamConfig.

The reference packages are never imported by product code; tests use them to
check that our network and predictor compute the same numbers on the same
random weights.
"""

from __future__ import annotations

from functools import partial

import torch

from backend.model.config import SamConfig


def build_reference_sam(config: SamConfig, *, seed: int = 0) -> torch.nn.Module:
    """A ``segment_anything`` (or ``mobile_sam`` for TinyViT) Sam with random weights.

    Parameters that the reference initialises to zero (relative positions,
    absolute position embedding) are randomised too, so that every weight
    matters in the comparison.
    """
    torch.manual_seed(seed)
    if config.encoder == "vit":
        from segment_anything.modeling import (
            ImageEncoderViT,
            MaskDecoder,
            PromptEncoder,
            Sam,
            TwoWayTransformer,
        )

        vit = config.vit
        encoder = ImageEncoderViT(
            depth=vit.depth,
            embed_dim=vit.embed_dim,
            img_size=config.image_size,
            mlp_ratio=vit.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=vit.num_heads,
            patch_size=vit.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=vit.global_attn_indexes,
            window_size=vit.window_size,
            out_chans=config.prompt_embed_dim,
        )
    else:
        from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer

        tiny = config.tiny_vit
        encoder = TinyViT(
            img_size=config.image_size,
            in_chans=3,
            num_classes=tiny.num_classes,
            embed_dims=list(tiny.embed_dims),
            depths=list(tiny.depths),
            num_heads=list(tiny.num_heads),
            window_sizes=list(tiny.window_sizes),
            mlp_ratio=tiny.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=tiny.mbconv_expand_ratio,
            local_conv_size=tiny.local_conv_size,
            layer_lr_decay=0.8,
        )
    embedding = config.embedding_size
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(embedding, embedding),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    with torch.no_grad():
        for name, param in sam.named_parameters():
            if "rel_pos" in name or name.endswith("pos_embed"):
                param.normal_(0.0, 0.02)
    return sam.eval()


def tiny_vit_config(*, image_size: int = 128, prompt_dim: int = 32) -> SamConfig:
    """A ViT SAM small enough for unit tests (embedding 8x8 at 128 pixels)."""
    from backend.model.config import ViTConfig

    return SamConfig(
        encoder="vit",
        vit=ViTConfig(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
        image_size=image_size,
        prompt_embed_dim=prompt_dim,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
    )
