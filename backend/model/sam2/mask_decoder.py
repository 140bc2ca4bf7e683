"""SAM 2's mask decoder: SAM's, plus high-resolution inputs, an object-score head and the
dynamic multimask fallback.

Parameter names are those of Meta's ``sam2.modeling.sam.mask_decoder.MaskDecoder``
(``transformer.*``, ``obj_score_token``, ``iou_token``, ``mask_tokens``,
``output_upscaling.{0,1,3}``, ``conv_s0``, ``conv_s1``,
``output_hypernetworks_mlps.N.layers.M``, ``iou_prediction_head.layers.M``,
``pred_obj_score_head.layers.M``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..common import LayerNorm2d
from .mask_upscaling import HighResRows, high_res_rows, upscale_masks
from .mlp import MLP
from .transformer import Sam2TwoWayTransformer


class Sam2DecoderOutput(NamedTuple):
    """What the decoder returns for B prompts.

    Attributes:
        masks: ``BxMx4hx4w`` low-res mask logits (M = 3 with multimask output, else 1).
        iou_pred: ``BxM`` predicted IoU (in 0..1 with the SAM 2.1 sigmoid head).
        object_score_logits: ``Bx1``: whether the object is present (> 0).
    """

    masks: Tensor
    iou_pred: Tensor
    object_score_logits: Tensor


class Sam2DecoderCache(NamedTuple):
    """Prompt-independent decoder inputs of one image, from :meth:`Sam2MaskDecoder.precompute`.

    Attributes:
        keys: ``1xNxC`` image tokens with the "no mask" dense embedding added.
        key_pe: ``1xNxC`` positional encoding of the image tokens.
        first_projections: The first two-way block's image-side projections of ``keys``.
        image_embeddings: ``1xCxhxw`` as given (used with a mask prompt).
        high_res: ``(feat_s0, feat_s1)`` as given, or None.
        rows: The same features in the upscaling's row order, or None.
    """

    keys: Tensor
    key_pe: Tensor
    first_projections: tuple[Tensor, Tensor, Tensor] | tuple[()]
    image_embeddings: Tensor
    high_res: tuple[Tensor, Tensor] | None
    rows: HighResRows | None


class Sam2MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs + 1`` masks, their IoU and an object score.

    Mask 0 is the single-mask output, masks ``1..num_multimask_outputs`` the
    multimask (ambiguity-aware) outputs. With ``dynamic_multimask_via_stability``
    a single-mask request whose mask 0 is unstable (the IoU of its masks at
    logit thresholds ``+-delta`` below ``thresh``) returns the multimask output
    with the highest predicted IoU instead (in eval mode, as Meta's).
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: Sam2TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer_dim = c
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, c)
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            c,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    # ------------------------------------------------------------------ entry points
    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
        high_res_features: tuple[Tensor, Tensor] | list[Tensor] | None = None,
    ) -> Sam2DecoderOutput:
        """Predict masks.

        Args:
            image_embeddings: ``1xCxhxw`` (shared by all prompts, broadcast) or
                ``BxCxhxw`` (embedding ``i`` with prompt ``i``).
            image_pe: ``1xCxhxw`` positional encoding of the embedding grid.
            sparse_prompt_embeddings: ``BxTxC`` point / box tokens.
            dense_prompt_embeddings: ``(1|B)xCxhxw`` mask-prompt embeddings.
            multimask_output: Masks 1..3 (True) or one mask (False: mask 0, or
                the dynamic fallback).
            high_res_features: ``(feat_s0 (1|B)xC/8x4hx4w, feat_s1 (1|B)xC/4x2hx2w)``,
                already through ``conv_s0`` / ``conv_s1``; required when the
                decoder uses high-resolution features.
        """
        keys = (image_embeddings + dense_prompt_embeddings).flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        high_res = self._check_high_res(high_res_features)
        size = (image_embeddings.shape[-2], image_embeddings.shape[-1])
        return self._decode(
            keys, key_pe, None, sparse_prompt_embeddings, multimask_output, size, high_res, None
        )

    def precompute(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        no_mask_embedding: Tensor,
        high_res_features: tuple[Tensor, Tensor] | None = None,
    ) -> Sam2DecoderCache:
        """Prompt-independent work for one image (a pure function of its inputs).

        Args:
            image_embeddings: ``1xCxhxw``.
            image_pe: ``1xCxhxw`` (``prompt_encoder.get_dense_pe()``).
            no_mask_embedding: ``prompt_encoder.no_mask_embed.weight`` (``1xC``).
            high_res_features: As in :meth:`forward`.
        """
        keys = (image_embeddings + no_mask_embedding.reshape(1, -1, 1, 1)).flatten(2).transpose(1, 2)
        keys = keys.contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        blocks = self.transformer.blocks()
        first = blocks[0].image_projections(keys, key_pe) if blocks and self.transformer.can_fold() else ()
        high_res = self._check_high_res(high_res_features)
        rows = high_res_rows(*high_res) if high_res is not None else None
        return Sam2DecoderCache(keys, key_pe, first, image_embeddings, high_res, rows)

    def forward_cached(
        self,
        cache: Sam2DecoderCache,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor | None,
        multimask_output: bool,
    ) -> Sam2DecoderOutput:
        """As :meth:`forward` with the image side from :meth:`precompute`.

        ``dense_prompt_embeddings`` is None without a mask prompt (the cached
        keys hold the "no mask" embedding) or the ``BxCxhxw`` embedding of one.
        """
        size = (cache.image_embeddings.shape[-2], cache.image_embeddings.shape[-1])
        if dense_prompt_embeddings is None:
            first = cache.first_projections or None
            return self._decode(
                cache.keys, cache.key_pe, first, sparse_prompt_embeddings, multimask_output, size,
                cache.high_res, cache.rows,
            )  # fmt: skip
        keys = (cache.image_embeddings + dense_prompt_embeddings).flatten(2).transpose(1, 2)
        return self._decode(
            keys,
            cache.key_pe,
            None,
            sparse_prompt_embeddings,
            multimask_output,
            size,
            cache.high_res,
            cache.rows,
        )

    # ------------------------------------------------------------------ the computation
    def _check_high_res(
        self, features: tuple[Tensor, Tensor] | list[Tensor] | None
    ) -> tuple[Tensor, Tensor] | None:
        if not self.use_high_res_features:
            return None
        if features is None or len(features) != 2:
            raise ValueError("this decoder needs high_res_features=(feat_s0, feat_s1)")
        return features[0], features[1]

    def _decode(
        self,
        keys: Tensor,
        key_pe: Tensor,
        first_projections: tuple[Tensor, Tensor, Tensor] | None,
        sparse: Tensor,
        multimask_output: bool,
        size: tuple[int, int],
        high_res: tuple[Tensor, Tensor] | None,
        rows: HighResRows | None,
    ) -> Sam2DecoderOutput:
        dynamic = not multimask_output and self.dynamic_multimask_via_stability and not self.training
        if multimask_output:
            mask_ids = list(range(1, self.num_mask_tokens))
        elif dynamic:
            mask_ids = list(range(self.num_mask_tokens))
        else:
            mask_ids = [0]
        s = 1 if self.pred_obj_scores else 0
        b = sparse.shape[0]
        weights = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            weights.insert(0, self.obj_score_token.weight)
        output_tokens = torch.cat(weights, dim=0)
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(b, -1, -1), sparse.to(output_tokens.dtype)], dim=1
        )
        # Only the object-score, IoU and returned mask tokens are needed after the transformer.
        needed = list(range(s + 1)) + [s + 1 + i for i in mask_ids]
        hs, src = self.transformer.forward_tokens(keys, key_pe, tokens, first_projections, needed)
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, s + 1 + j]) for j, i in enumerate(mask_ids)], dim=1
        )
        masks = upscale_masks(self.output_upscaling, src, hyper_in, size, high_res, rows)
        iou = self.iou_prediction_head(hs[:, s])[:, mask_ids[0] : mask_ids[-1] + 1]
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            object_score_logits = 10.0 * iou.new_ones(iou.shape[0], 1)  # "present", as Meta's
        if dynamic:
            masks, iou = self._dynamic_multimask(masks, iou)
        return Sam2DecoderOutput(masks, iou, object_score_logits)

    def stability_scores(self, mask_logits: Tensor) -> Tensor:
        """``...xHxW`` logits -> ``...``: IoU of the masks at thresholds ``+delta`` and ``-delta``."""
        delta = self.dynamic_multimask_stability_delta
        flat = mask_logits.flatten(-2)
        area_i = torch.sum(flat > delta, dim=-1).float()
        area_u = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def _dynamic_multimask(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """``Bx4x...`` masks and ``Bx4`` IoU -> mask 0, or the best of 1..3 where mask 0 is unstable."""
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = torch.argmax(iou[:, 1:], dim=-1) + 1
        stable = self.stability_scores(masks[:, 0]) >= self.dynamic_multimask_stability_thresh
        pick = torch.where(stable, torch.zeros_like(best), best)
        return masks[rows, pick].unsqueeze(1), iou[rows, pick].unsqueeze(1)
