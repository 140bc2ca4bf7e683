"""The ``Sam2`` image network (encoder + prompt encoder + mask decoder + no-memory embedding),
``build_sam2`` and checkpoint loading.

Only SAM 2.1's image path is built. Its state-dict keys are those of Meta's
``SAM2Base`` (``image_encoder.*``, ``sam_prompt_encoder.*``,
``sam_mask_decoder.*``, ``no_mem_embed``); the video-memory parameters in an
official checkpoint (:data:`VIDEO_ONLY_PREFIXES`) are accepted and skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..memo import module_reads
from .config import Sam2Config
from .fpn_neck import FpnNeck
from .hiera import Hiera
from .image_encoder import Sam2ImageEncoder
from .image_features import Sam2ImageFeatures
from .mask_decoder import Sam2DecoderCache, Sam2DecoderOutput, Sam2MaskDecoder
from .prompt_encoder import Sam2PromptEncoder
from .transformer import Sam2TwoWayTransformer

VIDEO_ONLY_PREFIXES: tuple[str, ...] = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "mask_downsample.",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
)
"""Keys of an official SAM 2.1 checkpoint that only the video model uses (skipped on loading)."""


class Sam2(nn.Module):
    """SAM 2.1 for single images.

    Args:
        image_encoder: Hiera trunk + FPN neck.
        sam_prompt_encoder: Points, boxes, mask prompts -> embeddings.
        sam_mask_decoder: Embeddings -> masks, IoU, object score.
        config: The configuration it was built from.
    """

    mask_threshold: float = 0.0
    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(
        self,
        *,
        image_encoder: Sam2ImageEncoder,
        sam_prompt_encoder: Sam2PromptEncoder,
        sam_mask_decoder: Sam2MaskDecoder,
        config: Sam2Config,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        # The video model's "no memory" token; added to a single image's embedding.
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, config.hidden_dim))
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels (1024 for the official models)."""
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the network weights."""
        return self.no_mem_embed.dtype

    def preprocess(self, images: Tensor) -> Tensor:
        """``Bx3xHxW`` RGB on the 0..255 scale (any dtype) -> ``Bx3xSxS`` model input.

        As Meta's ``SAM2Transforms``: scaled to 0..1, resized to ``S x S``
        (bilinear with antialiasing, aspect ratio not kept), normalised with
        the ImageNet mean and standard deviation; computed in float32, returned
        in the weights' dtype.
        """
        x = images.to(self.pixel_mean.device, torch.float32) / 255.0
        size = self.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.pixel_mean.float()) / self.pixel_std.float()
        return x.to(self.dtype)

    def encode_image(self, images: Tensor) -> Sam2ImageFeatures:
        """``Bx3xSxS`` preprocessed images -> their :class:`Sam2ImageFeatures`.

        The stride-4 and stride-8 neck levels go through the decoder's
        ``conv_s0`` / ``conv_s1`` (folded into the neck's lateral convolutions
        when both are stock layers); ``no_mem_embed`` is added to the
        stride-16 level, as Meta's ``SAM2ImagePredictor.set_image`` does.
        """
        decoder = self.sam_mask_decoder
        post = {0: decoder.conv_s0, 1: decoder.conv_s1} if decoder.use_high_res_features else None
        levels = self.image_encoder(images, post)
        embed = levels[-1]
        if self.config.directly_add_no_mem_embed:
            embed = embed + self.no_mem_embed.view(1, -1, 1, 1).to(embed.dtype)
        if not decoder.use_high_res_features:
            empty = embed.new_zeros(embed.shape[0], 0, 1, 1)
            return Sam2ImageFeatures(embed, empty, empty)
        return Sam2ImageFeatures(embed, levels[0], levels[1])

    def prepare_decoder(self, features: Sam2ImageFeatures) -> Sam2DecoderCache:
        """Prompt-independent decoder work for one image; pass it to :meth:`decode` for every prompt."""
        high_res = features.high_res_feats if self.sam_mask_decoder.use_high_res_features else None
        return self.sam_mask_decoder.precompute(
            features.image_embed,
            self.sam_prompt_encoder.get_dense_pe(),
            self.sam_prompt_encoder.no_mask_embed.weight,
            high_res,
        )

    def decoder_cache_inputs(self) -> tuple[Hashable, list[Tensor]]:
        """What :meth:`prepare_decoder`'s result depends on besides the features, as
        :func:`~backend.model.memo.module_reads` gives it: the prompt encoder's position
        encoding and "no mask" embedding, and the modules of the first block's image-side
        projections (which only the decoder's folded path uses: a decoder no longer
        foldable ignores them)."""
        pe = self.sam_prompt_encoder
        first = self.sam_mask_decoder.transformer.first_layer_projection_modules()
        return module_reads(pe.pe_layer, pe.no_mask_embed, *first)

    def decode(
        self,
        cache: Sam2DecoderCache,
        points: tuple[Tensor, Tensor] | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
    ) -> Sam2DecoderOutput:
        """Prompts -> low-res logits ``BxMx4hx4w``, IoU ``BxM`` and object scores ``Bx1``.

        Args:
            cache: From :meth:`prepare_decoder`.
            points: ``(BxNx2 (x, y) in model-input pixels, BxN labels)``;
                labels 1 positive, 0 negative, 2 / 3 box top-left / bottom-right,
                -1 padding. A box is two points labelled 2 and 3 (SAM 2's
                predictor puts them first). A padding point is appended.
            mask_input: ``Bx1x4hx4w`` logits of a previous prediction.
            multimask_output: M = 3 if True, else M = 1.
        """
        sparse, dense = self.sam_prompt_encoder(points, None, mask_input)
        return self.sam_mask_decoder.forward_cached(
            cache, sparse, dense if mask_input is not None else None, multimask_output
        )


class LoadReport(NamedTuple):
    """What :func:`load_sam2_state_dict` skipped: the video-only keys found in the file."""

    skipped: list[str]


def load_sam2_state_dict(model: Sam2, state_dict: Mapping[str, Tensor]) -> LoadReport:
    """Load Meta's (or our) SAM 2.1 weights, strictly on the image path.

    Args:
        model: The network, e.g. from :func:`build_sam2`.
        state_dict: A state dict, or a checkpoint ``{"model": state_dict}``.

    Returns:
        The keys skipped because they belong to the video model
        (:data:`VIDEO_ONLY_PREFIXES`).

    Raises:
        ValueError: Image-path keys are missing, unknown or mis-shaped (all listed).
    """
    wrapped = state_dict.get("model")
    if isinstance(wrapped, Mapping):
        state_dict = wrapped
    skipped = [k for k in state_dict if k.startswith(VIDEO_ONLY_PREFIXES)]
    image_path = {k: v for k, v in state_dict.items() if not k.startswith(VIDEO_ONLY_PREFIXES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(image_path))
    unexpected = sorted(set(image_path) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(image_path[k].shape)}, network {tuple(own[k].shape)}"
        for k in set(own) & set(image_path)
        if image_path[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
            if keys:
                parts.append(
                    f"{title} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else "")
                )
        raise ValueError("the weights do not fit this SAM 2.1 network: " + "; ".join(parts))
    model.load_state_dict(image_path, strict=True)
    return LoadReport(skipped=skipped)


def build_sam2(config: Sam2Config) -> Sam2:
    """Build an (untrained, eval-mode) SAM 2.1 image network from its configuration."""
    c = config
    if c.image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {c.image_size}")
    trunk = Hiera(c.hiera)
    neck = FpnNeck(
        d_model=c.hidden_dim,
        backbone_channel_list=trunk.channel_list,
        top_down_levels=c.fpn_top_down_levels,
        interp_mode=c.fpn_interp_mode,
    )
    grid = c.embedding_size
    model = Sam2(
        image_encoder=Sam2ImageEncoder(trunk=trunk, neck=neck, scalp=c.scalp),
        sam_prompt_encoder=Sam2PromptEncoder(
            embed_dim=c.hidden_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(c.image_size, c.image_size),
            mask_in_chans=c.mask_in_chans,
        ),
        sam_mask_decoder=Sam2MaskDecoder(
            transformer_dim=c.hidden_dim,
            transformer=Sam2TwoWayTransformer(
                depth=c.decoder_depth,
                embedding_dim=c.hidden_dim,
                num_heads=c.decoder_num_heads,
                mlp_dim=c.decoder_mlp_dim,
            ),
            num_multimask_outputs=c.num_multimask_outputs,
            iou_head_depth=c.iou_head_depth,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
            use_high_res_features=c.use_high_res_features,
            iou_prediction_use_sigmoid=c.iou_prediction_use_sigmoid,
            pred_obj_scores=c.pred_obj_scores,
            pred_obj_scores_mlp=c.pred_obj_scores_mlp,
            dynamic_multimask_via_stability=c.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=c.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=c.dynamic_multimask_stability_thresh,
        ),
        config=c,
    )
    return model.eval()
