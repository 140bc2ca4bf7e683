"""SAM 3: image -> vision features once, then concept prompts (every instance) and clicks (ranked masks).

The networks and their pre- and post-processing are transformers'
(``Sam3Model`` + ``Sam3Processor`` for concepts, ``Sam3TrackerModel`` +
``Sam3TrackerProcessor`` for points and boxes); the predictor owns the
per-image state, so a second concept on the same image skips the ViT, and
caches the text encoder's output per phrase across images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from backend.api.errors import InvalidInput
from backend.byte_lru import ByteBoundedLRU
from backend.formats.images import check_rgb_pixels
from backend.inference.mask_ops import above_threshold, stability_score
from backend.inference.predictor import PredictorOutput
from backend.inference.prompts import CheckedPrompt, check_original_size, check_predictor_prompt
from backend.inference.sam3.concepts import (
    ConceptInstance,
    ExemplarBox,
    check_concept_prompt,
    check_probability,
    instances_by_score,
)
from backend.inference.sam3.features import Sam3ImageFeatures, tracker_image_embeddings
from backend.inference.sam3.loading import Sam3Models

ArrayLike = np.ndarray | Sequence


class Sam3Predictor:
    """Holds one image's SAM 3 features and answers concept and interactive prompts on it.

    Args:
        models: :func:`~backend.inference.sam3.loading.load_sam3`'s networks.
        text_cache_bytes: Budget of the text-encoder outputs kept per phrase
            (LRU), so the same concept on the next image skips the text
            encoder too; 0 keeps none.
    """

    def __init__(self, models: Sam3Models, *, text_cache_bytes: int = 64 * 2**20) -> None:
        if text_cache_bytes < 0:
            raise InvalidInput(f"text_cache_bytes must be >= 0, got {text_cache_bytes}")
        self.models = models
        self.text_cache: ByteBoundedLRU[Any] = ByteBoundedLRU(text_cache_bytes)
        self._features: Sam3ImageFeatures | None = None
        self._original_size: tuple[int, int] | None = None
        self._tracker_embeddings: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ image
    @property
    def device(self) -> torch.device:
        return self.models.device

    @property
    def dtype(self) -> torch.dtype:
        return self.models.dtype

    @property
    def accepted_prompts(self) -> tuple[str, ...]:
        """Prompt kinds this model answers (see :mod:`backend.inference.sam3.record`)."""
        return self.models.accepted_prompts

    @property
    def embedding(self) -> Sam3ImageFeatures:
        """The current image's features."""
        return self._require_image()[0]

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` of the current image in pixels."""
        return self._require_image()[1]

    def _require_image(self) -> tuple[Sam3ImageFeatures, tuple[int, int]]:
        if self._features is None or self._original_size is None:
            raise InvalidInput("no image is set: call set_image() or set_embedding() first")
        return self._features, self._original_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 RGB -> ``1x3xSxS`` model input (``Sam3Processor``: resize, rescale, normalise)."""
        check_rgb_pixels(image)
        pixels = self.models.processor(images=image, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def compute_embedding(self, image: np.ndarray) -> Sam3ImageFeatures:
        """``HxWx3`` uint8 RGB -> its features: one ViT pass (does not change the current image)."""
        vision = self.models.detector.get_vision_features(pixel_values=self.preprocess(image))
        return Sam3ImageFeatures.from_vision_output(vision)

    def set_image(self, image: np.ndarray) -> None:
        """Compute and keep the features of an ``HxWx3`` uint8 RGB image."""
        features = self.compute_embedding(image)
        self.set_embedding(features, original_size=(image.shape[0], image.shape[1]))

    def set_embedding(self, embedding: Sam3ImageFeatures, *, original_size: tuple[int, int]) -> None:
        """Use precomputed features (e.g. from a cache).

        Args:
            embedding: :meth:`compute_embedding`'s output for this image.
            original_size: ``(height, width)`` of the image in pixels.
        """
        if not isinstance(embedding, Sam3ImageFeatures):
            raise InvalidInput(
                "a SAM 3 embedding is a Sam3ImageFeatures (from Sam3Predictor.compute_embedding)"
            )
        if embedding.backbone.ndim != 3 or embedding.backbone.shape[0] != 1:
            raise InvalidInput(
                f"SAM 3 features hold one image, got backbone {tuple(embedding.backbone.shape)}"
            )
        size = check_original_size(original_size)
        self._features = embedding.to(self.device, self.dtype)
        self._original_size = size
        self._tracker_embeddings = None

    def reset_image(self) -> None:
        """Forget the current image."""
        self._features = self._original_size = self._tracker_embeddings = None

    # --------------------------------------------------------------- concepts
    @torch.inference_mode()
    def predict_concept(
        self,
        text: str | None = None,
        exemplar_boxes: Sequence[ExemplarBox] | None = None,
        *,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> list[ConceptInstance]:
        """Every instance of a concept on the current image, best score first.

        Args:
            text: A noun phrase (``"red car"``), or None for exemplars alone.
            exemplar_boxes: ``([x1, y1, x2, y2], positive)`` pairs in original
                pixels: boxes around examples (True) and counter-examples (False).
            threshold: Keep instances whose score is above this, in ``[0, 1]``.
            mask_threshold: Mask probability above which a pixel is in the mask, in ``[0, 1]``.

        Returns:
            One :class:`ConceptInstance` per instance (``HxW`` mask, XYXY box,
            score), sorted by descending score; empty when none passes.

        Raises:
            InvalidInput: No image set, a malformed prompt, thresholds outside
                ``[0, 1]``, a phrase longer than the text encoder's context.
        """
        features, (height, width) = self._require_image()
        prompt = check_concept_prompt(width=width, height=height, text=text, exemplar_boxes=exemplar_boxes)
        threshold = check_probability("threshold", threshold)
        mask_threshold = check_probability("mask_threshold", mask_threshold)
        inputs = self.models.processor(
            text=prompt.text,
            input_boxes=None if prompt.boxes is None else [prompt.boxes.tolist()],
            input_boxes_labels=None if prompt.labels is None else [prompt.labels.tolist()],
            original_sizes=[[height, width]],
            return_tensors="pt",
        )
        input_ids = inputs["input_ids"].to(self.device)
        attention_mask = inputs["attention_mask"].to(self.device)
        boxes = inputs.get("input_boxes")
        labels = inputs.get("input_boxes_labels")
        outputs = self.models.detector(
            vision_embeds=features.to_vision_embeds(),
            text_embeds=self._text_features(input_ids, attention_mask),
            attention_mask=attention_mask,
            input_boxes=None if boxes is None else boxes.to(self.device, self.dtype),
            input_boxes_labels=None if labels is None else labels.to(self.device),
        )
        result = self.models.processor.post_process_instance_segmentation(
            outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[(height, width)]
        )[0]
        return instances_by_score(result)

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """``Sam3Model.get_text_features`` for one tokenised phrase, from the LRU cache when there."""
        text_config: Any = self.models.detector.config.text_config
        limit = int(text_config.max_position_embeddings)
        if input_ids.shape[-1] > limit:
            raise InvalidInput(
                f"the concept is {input_ids.shape[-1]} tokens long; SAM 3's text encoder takes at most {limit}"
            )
        key = (input_ids.cpu().numpy().tobytes(), attention_mask.cpu().numpy().tobytes())
        cached = self.text_cache.get(key)
        if cached is not None:
            return cached
        features = self.models.detector.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True
        )
        self.text_cache.put(key, features, _nbytes(features))
        return features

    # ------------------------------------------------------------ interactive
    @torch.inference_mode()
    def predict(
        self,
        *,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        multimask_output: bool = True,
        stability: bool = True,
    ) -> PredictorOutput:
        """Ranked masks for one object per box (SAM 3's tracker head), as ``SamPredictor.predict``.

        Args:
            point_coords: ``Nx2`` ``(x, y)`` in original pixels.
            point_labels: ``N`` ints, 1 = foreground, 0 = background.
            box: ``4`` or ``Bx4`` XYXY boxes in original pixels; B boxes give
                B objects, each with the same points.
            mask_input: ``1xLxL`` or ``Bx1xLxL`` low-res logits from an earlier
                answer (``low_res_logits[:, :1]``); L = 4 x S / 14 (288 at full size).
            multimask_output: Three candidates (True) or one (False).
            stability: Also compute the stability scores.

        Returns:
            A :class:`~backend.inference.predictor.PredictorOutput` with B
            objects (B = 1 without boxes), candidates ranked by predicted IoU.

        Raises:
            InvalidInput: No image set, a malformed prompt, or weights without
                the tracker head (a folder saved from ``Sam3Model`` alone).
        """
        tracker, tracker_processor = self.models.tracker, self.models.tracker_processor
        if tracker is None or tracker_processor is None:
            raise InvalidInput(
                "this SAM 3 model answers text and exemplar_boxes only: points and boxes need the tracker "
                "weights, which facebook/sam3 has and a folder saved from Sam3Model alone has not"
            )
        height, width = self.original_size
        checked = check_predictor_prompt(
            size=(height, width),
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            mask_side=tracker.prompt_encoder.mask_input_size[0],
        )
        prompt, masks, batch = checked.prompt, checked.masks, checked.batch
        if masks is not None and len(masks) > 1:
            # transformers' tracker shares one mask prompt across a call's objects: one call each.
            parts = [self._decode(prompt, masks[i : i + 1], i, multimask_output) for i in range(batch)]
            low_res, scores = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            low_res, scores = self._decode(prompt, masks, None, multimask_output)
        scores, order = scores.sort(dim=1, descending=True)
        low_res = torch.gather(low_res, 1, order[:, :, None, None].expand_as(low_res))
        logits = tracker_processor.post_process_masks([low_res], [[height, width]], binarize=False)[0]
        return PredictorOutput(
            masks=above_threshold(logits).cpu().numpy(),
            scores=scores.cpu().numpy(),
            stability_scores=stability_score(logits).cpu().numpy() if stability else None,
            low_res_logits=low_res.cpu().numpy(),
        )

    def _decode(
        self, prompt: CheckedPrompt, masks: np.ndarray | None, index: int | None, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One tracker call: ``BxKxLxL`` float32 low-res logits and ``BxK`` predicted IoU, model order.

        ``index`` picks one object (its box) out of the prompt; None decodes all of them.
        """
        tracker, tracker_processor = self.models.tracker, self.models.tracker_processor
        assert tracker is not None and tracker_processor is not None  # checked by predict
        height, width = self.original_size
        boxes = prompt.boxes if index is None or prompt.boxes is None else prompt.boxes[index : index + 1]
        objects = 1 if boxes is None else len(boxes)
        points = None if prompt.points is None else [[prompt.points.tolist()] * objects]
        labels = None if prompt.labels is None else [[prompt.labels.tolist()] * objects]
        inputs = tracker_processor(
            original_sizes=[[height, width]],
            input_points=points,
            input_labels=labels,
            input_boxes=None if boxes is None else [boxes.tolist()],
            return_tensors="pt",
        )
        outputs = tracker(
            image_embeddings=self._tracker_features(),
            input_points=self._on_device(inputs.get("input_points")),
            input_labels=self._on_device(inputs.get("input_labels"), floating=False),
            input_boxes=self._on_device(inputs.get("input_boxes")),
            input_masks=None if masks is None else self._on_device(torch.from_numpy(masks)),
            multimask_output=multimask_output,
        )
        return outputs.pred_masks[0].float(), outputs.iou_scores[0].float()

    def _tracker_features(self) -> list[torch.Tensor]:
        """The tracker's image embeddings of the current image, built once from the cached ViT tokens."""
        if self._tracker_embeddings is None:
            assert self.models.tracker is not None
            self._tracker_embeddings = tracker_image_embeddings(self.models.tracker, self.embedding.backbone)
        return self._tracker_embeddings

    def _on_device(self, tensor: torch.Tensor | None, *, floating: bool = True) -> torch.Tensor | None:
        if tensor is None:
            return None
        return tensor.to(self.device, self.dtype) if floating else tensor.to(self.device)


def _nbytes(output: Any) -> int:
    """Bytes of the tensors in a transformers model output (its tensor values, one level deep)."""
    values = output.values() if hasattr(output, "values") else ()
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))
