"""SAM 2.1: image -> features once, then any number of prompts -> three ranked masks.

The same interface as :class:`backend.inference.predictor.SamPredictor`, with
SAM 2.1's arithmetic (Meta's ``SAM2ImagePredictor``):

* the image is resized to the model's square input without keeping its
  aspect ratio, so points and boxes scale by ``S / width`` and ``S / height``
  (no padding);
* what is cached per image is a :class:`~backend.model.sam2.Sam2ImageFeatures`:
  the image embedding together with the two high-resolution feature maps;
* a box is two points labelled 2 and 3 placed before the clicks;
* masks are the low-res logits resized straight to the image size; the low-res
  logits handed back for refinement are clamped to ``[-32, 32]``;
* with ``multimask_output=False`` an unstable single mask falls back to the
  best of the three candidates (the decoder's dynamic multimask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.api.errors import InvalidInput
from backend.formats.coordinates import to_model_boxes, to_model_points
from backend.formats.images import check_rgb_pixels
from backend.inference.mask_ops import upscale_in_chunks
from backend.inference.predictor import (
    PredictorOutput,
    candidates_in_calls,
    check_features_fit_model,
    decode_in_calls,
    prompt_tensors,
    prompts_per_decoder_call,
)
from backend.inference.prompts import check_original_size, check_points_paired, check_predictor_prompt
from backend.model.mask_decoder import DecodedCandidates
from backend.model.memo import MemoOnWeights
from backend.model.sam2 import Sam2, Sam2DecoderCache, Sam2DecoderOutput, Sam2ImageFeatures

ArrayLike = np.ndarray | Sequence

LOW_RES_LOGIT_LIMIT = 32.0
"""Low-res logits returned for refinement are clamped to +-this (as Meta's predictor does)."""


@dataclass
class Sam2PredictorOutput(PredictorOutput):
    """:class:`~backend.inference.predictor.PredictorOutput` plus SAM 2's object score.

    Attributes:
        object_score_logits: ``Bx1`` float32; above 0 when the model thinks the
            prompted object is in the image (the image predictor's masks do
            not depend on it).
    """

    object_score_logits: np.ndarray


class Sam2Predictor:
    """Holds one image's SAM 2.1 features and answers prompts on it.

    Args:
        model: A :class:`backend.model.sam2.Sam2` in eval mode, on its device and dtype.
    """

    def __init__(self, model: Sam2) -> None:
        self.model = model
        self.image_size: int = model.config.image_size
        self.low_res_size: int = model.config.low_res_size
        self._features: Sam2ImageFeatures | None = None
        self._original_size: tuple[int, int] | None = None
        self._decoder_memo: MemoOnWeights[Sam2DecoderCache] = MemoOnWeights()

    # ------------------------------------------------------------------ image
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def embedding(self) -> Sam2ImageFeatures:
        """The current image's features (embedding and high-resolution maps)."""
        return self._require_image()[0]

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` of the current image in pixels."""
        return self._require_image()[1]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` the image occupies in the model input: all of it (``S x S``)."""
        self._require_image()
        return self.image_size, self.image_size

    def _require_image(self) -> tuple[Sam2ImageFeatures, tuple[int, int]]:
        if self._features is None or self._original_size is None:
            raise InvalidInput("no image is set: call set_image() or set_embedding() first")
        return self._features, self._original_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 RGB -> ``1x3xSxS`` model input (see :meth:`Sam2.preprocess`)."""
        check_rgb_pixels(image)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None]
        return self.model.preprocess(x)

    @torch.inference_mode()
    def compute_embedding(self, image: np.ndarray) -> Sam2ImageFeatures:
        """``HxWx3`` uint8 RGB -> its features (does not change the current image)."""
        return self.model.encode_image(self.preprocess(image))

    def set_image(self, image: np.ndarray) -> None:
        """Compute and keep the features of an ``HxWx3`` uint8 RGB image."""
        features = self.compute_embedding(image)
        self.set_embedding(features, original_size=(image.shape[0], image.shape[1]))

    def set_embedding(self, embedding: Sam2ImageFeatures, *, original_size: tuple[int, int]) -> None:
        """Use precomputed features (e.g. from a cache).

        Args:
            embedding: :meth:`compute_embedding`'s output for this image (batch 1).
            original_size: ``(height, width)`` of the image in pixels.
        """
        self._check_features(embedding)
        size = check_original_size(original_size)
        self._features = embedding.to(self.device, self.dtype)
        self._original_size = size
        self._decoder_memo = MemoOnWeights()

    def _check_features(self, features: object) -> None:
        config = self.model.config
        c, e = config.hidden_dim, config.embedding_size
        expected = ((1, c, e, e), (1, c // 8, 4 * e, 4 * e), (1, c // 4, 2 * e, 2 * e))
        if not isinstance(features, Sam2ImageFeatures):
            raise InvalidInput("a SAM 2.1 embedding is a Sam2ImageFeatures (image_embed, feat_s0, feat_s1)")
        got = tuple(tuple(t.shape) for t in features)
        if got != expected:
            raise InvalidInput(f"SAM 2.1 features must have shapes {expected}, got {got}")

    def reset_image(self) -> None:
        """Forget the current image."""
        self._features = self._original_size = None
        self._decoder_memo = MemoOnWeights()

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        *,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask_output: bool = True,
        stability: bool = True,
    ) -> Sam2PredictorOutput:
        """Masks for a prompt on the current image.

        Args:
            point_coords: ``Nx2`` ``(x, y)`` in original pixels.
            point_labels: ``N`` ints, 1 = foreground, 0 = background.
            box: ``4`` or ``Bx4`` XYXY boxes in original pixels; B boxes give
                B objects, each with the same points.
            mask_input: ``1xLxL`` or ``Bx1xLxL`` low-res logits from an earlier
                answer (``low_res_logits[:, :1]`` of the chosen candidate).
            multimask_output: Three candidates (True) or one (False).
            stability: Also compute the stability scores (two more passes over
                the full-size logits).

        Returns:
            A :class:`Sam2PredictorOutput` with B objects (B = 1 without boxes),
            candidates ranked by predicted IoU.
        """
        checked = check_predictor_prompt(
            size=self.original_size,
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            mask_side=self.low_res_size,
        )
        with torch.inference_mode():
            out = self.decode_torch(*prompt_tensors(checked, self.device), multimask_output=multimask_output)
            scores, order = out.iou_pred.float().sort(dim=1, descending=True)
            low_res = out.masks.float()
            low_res = torch.gather(low_res, 1, order[:, :, None, None].expand_as(low_res))
            # The masks come from the unclamped logits, as Meta's.
            masks, stability_scores = upscale_in_chunks(
                self.upscale_logits, low_res, self.original_size, stability=stability
            )
            return Sam2PredictorOutput(
                masks=masks,
                scores=scores.cpu().numpy(),
                stability_scores=stability_scores,
                low_res_logits=low_res.clamp(-LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT).cpu().numpy(),
                object_score_logits=out.object_score_logits.float().cpu().numpy(),
            )

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        *,
        multimask_output: bool = True,
        sort: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched prompts -> clamped low-res logits and scores (no upscaling; values unchecked, but points need labels).

        Args:
            point_coords: ``BxNx2`` float, original pixels.
            point_labels: ``BxN`` int (1 foreground, 0 background, -1 padding).
            boxes: ``Bx4`` XYXY float, original pixels.
            mask_input: ``Bx1xLxL`` logits.
            multimask_output: Three candidates (True) or one (False).
            sort: Rank candidates by predicted IoU, best first.

        Returns:
            ``(low_res_logits BxKxLxL, iou_scores BxK)`` in the model's dtype,
            the logits clamped to ``[-32, 32]``.
        """
        out = self.decode_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output=multimask_output
        )
        low_res, scores = out.masks.clamp(-LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT), out.iou_pred
        if sort and scores.shape[1] > 1:
            scores, order = scores.sort(dim=1, descending=True)
            low_res = torch.gather(low_res, 1, order[:, :, None, None].expand_as(low_res))
        return low_res, scores

    @torch.inference_mode()
    def decode_torch(
        self,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        *,
        multimask_output: bool = True,
    ) -> Sam2DecoderOutput:
        """Batched prompts in original pixels -> the decoder's raw output (unsorted, unclamped).

        Arguments as in :meth:`predict_torch`. Boxes become two points
        labelled 2 and 3 ahead of the clicks, as in Meta's predictor. The B
        prompts (several boxes) are decoded :meth:`prompts_per_decoder_call` at
        a time.
        """
        features, original_size = self._require_image()
        check_points_paired(point_coords, point_labels)
        model_size = (self.image_size, self.image_size)
        dtype = self.dtype
        coords = labels = None
        if point_coords is not None and point_labels is not None:
            coords = to_model_points(point_coords, original_size, model_size)
            labels = point_labels.to(torch.int64)
        if boxes is not None:
            corners = to_model_boxes(boxes, original_size, model_size).reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], device=corners.device).expand(len(corners), -1)
            if coords is not None and labels is not None:
                coords = torch.cat([corners, coords.expand(len(corners), -1, -1)], dim=1)
                labels = torch.cat([corner_labels, labels.expand(len(corners), -1)], dim=1)
            else:
                coords, labels = corners, corner_labels
        if coords is not None:
            coords = coords.to(dtype)
        if mask_input is not None:
            mask_input = mask_input.to(dtype)
        cache = self._decoder_cache()

        def decode(
            coords: torch.Tensor | None, labels: torch.Tensor | None, masks: torch.Tensor | None
        ) -> Sam2DecoderOutput:
            points = (coords, labels) if coords is not None and labels is not None else None
            return self.model.decode(cache, points, masks, multimask_output)

        return decode_in_calls(decode, (coords, labels, mask_input), self.prompts_per_decoder_call())

    @torch.inference_mode()
    def predict_candidates_above(
        self, point_coords: torch.Tensor, point_labels: torch.Tensor, min_iou: float | None
    ) -> DecodedCandidates:
        """Multimask candidates of many point prompts, keeping those with predicted IoU above ``min_iou``.

        Segment-everything's first filter (``SAM2AutomaticMaskGenerator``
        keeps ``iou > pred_iou_thresh`` the same way). The logits stay
        unclamped, as the reference upscales them. The prompts are decoded
        :meth:`prompts_per_decoder_call` at a time (at full size on a CPU: 1 in
        float32, 2 in bfloat16).

        Args:
            point_coords: ``BxNx2`` float, original pixels of the current image.
            point_labels: ``BxN`` int.
            min_iou: Keep candidates whose predicted IoU is strictly above
                this; ``None`` keeps all.

        Returns:
            The kept candidates (low-res logits ``KxLxL``, IoU, prompt index,
            unsorted candidate index), prompt-major.
        """
        return candidates_in_calls(
            lambda coords, labels: self._candidates_above(coords, labels, min_iou),
            point_coords,
            point_labels,
            self.prompts_per_decoder_call(),
        )

    def _candidates_above(
        self, point_coords: torch.Tensor, point_labels: torch.Tensor, min_iou: float | None
    ) -> DecodedCandidates:
        """:meth:`predict_candidates_above` in one decoder call."""
        out = self.decode_torch(point_coords, point_labels, multimask_output=True)
        per_prompt = out.iou_pred.shape[1]
        iou = out.iou_pred.float().flatten()
        keep = torch.ones_like(iou, dtype=torch.bool) if min_iou is None else iou > min_iou
        index = torch.nonzero(keep).flatten()
        return DecodedCandidates(
            low_res=out.masks.flatten(0, 1)[index],
            iou=iou[index],
            prompt=torch.div(index, per_prompt, rounding_mode="floor"),
            candidate=index % per_prompt,
        )

    def prompts_per_decoder_call(self) -> int:
        """See :func:`~backend.inference.predictor.prompts_per_decoder_call` (at full size on
        a CPU: 1 in float32, 2 in bfloat16)."""
        config = self.model.config
        return prompts_per_decoder_call(self.device, self.dtype, config.embedding_size**2, config.hidden_dim)

    def _decoder_cache(self) -> Sam2DecoderCache:
        """Prompt-independent decoder work for the current image, computed once per image
        and again whenever the weights it comes from change (:meth:`Sam2.decoder_cache_inputs`)."""
        features = self.embedding
        check_features_fit_model(features.image_embed, self.device, self.dtype)
        key, weights = self.model.decoder_cache_inputs()
        return self._decoder_memo.get(key, weights, lambda: self.model.prepare_decoder(features))

    def upscale_logits(
        self, low_res: torch.Tensor, original_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """``BxKxLxL`` low-res logits -> ``BxKxHxW`` logits at the original image size (bilinear,
        ``align_corners=False``, as Meta's ``postprocess_masks``). Whole factors along each
        axis (e.g. 768x1024 from 256: 3 and 4) run as :func:`resize_whole_factors`."""
        height, width = original_size or self.original_size
        batch, channels, low_h, low_w = low_res.shape
        fh, fw = height // low_h, width // low_w
        if fh * low_h == height and fw * low_w == width and not low_res.requires_grad:
            planes = resize_whole_factors(low_res.reshape(batch * channels, low_h, low_w), fh, fw)
            return planes.unflatten(0, (batch, channels))
        return F.interpolate(low_res, (height, width), mode="bilinear", align_corners=False)


def resize_whole_factors(planes: torch.Tensor, factor_h: int, factor_w: int) -> torch.Tensor:
    """``F.interpolate(planes, scale_factor=(factor_h, factor_w), mode="bilinear")`` for whole
    factors, as a few ``torch.lerp`` passes per axis (see :mod:`backend.model.upsampling`):
    the same values up to float32 rounding, several times faster on a CPU.

    Args:
        planes: ``N x h x w`` float.
        factor_h: Whole upsampling factor of the rows (at least 1).
        factor_w: Whole upsampling factor of the columns (at least 1).

    Returns:
        ``N x (factor_h h) x (factor_w w)``.
    """
    return _upsample_axis(_upsample_axis(planes, factor_w, dim=2), factor_h, dim=1)


def _upsample_axis(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Bilinear (``align_corners=False``) upsampling by a whole ``factor`` along ``dim`` (1 or 2).

    One ``torch.lerp`` with a scalar weight per output phase (faster than one
    broadcast call: the phases are then written with a fixed stride).
    """
    if factor == 1:
        return x
    length = x.shape[dim]
    shape = list(x.shape)
    shape.insert(dim + 1, factor)
    out = x.new_empty(shape)
    head, tail = x.narrow(dim, 0, length - 1), x.narrow(dim, 1, length - 1)
    for k in range(factor):
        # Output sample factor * i + k reads input position i + offset (clamped at the edges).
        offset = (k + 0.5) / factor - 0.5
        phase = out.select(dim + 1, k)
        if offset < 0:  # between samples i - 1 and i; the first one is sample 0
            torch.lerp(head, tail, 1.0 + offset, out=phase.narrow(dim, 1, length - 1))
            phase.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        else:  # between samples i and i + 1; the last one is the last sample
            torch.lerp(head, tail, offset, out=phase.narrow(dim, 0, length - 1))
            phase.narrow(dim, length - 1, 1).copy_(x.narrow(dim, length - 1, 1))
    return out.flatten(dim, dim + 1)
