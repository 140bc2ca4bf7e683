"""SAM 3 behind the engine interface: concepts find every instance, clicks give ranked masks.

The cached features are the ViT backbone's output
(:class:`~backend.inference.sam3.features.Sam3ImageFeatures`), so a second
concept, or a click after a concept, on the same image skips the image
encoder. Concepts run transformers' ``Sam3Model`` and its own
post-processing; clicks and boxes run ``Sam3TrackerModel`` (weights with the
tracker head only). Requests are decoded one at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.api.prompt_kinds import CONCEPT_PROMPT_KINDS
from backend.inference.engine import (
    DecodeRequest,
    DecodeResult,
    EncodedImage,
    EngineFacts,
    Instance,
    PredictorEngine,
)
from backend.inference.sam3.loading import Sam3Models
from backend.inference.sam3.predictor import Sam3Predictor


class Sam3Engine(PredictorEngine):
    """SAM 3's networks served through :class:`Sam3Predictor`.

    Args:
        models: :func:`~backend.inference.sam3.loading.load_sam3`'s networks.
        name: The model's name in the API.
        facts: The family's facts from the model record.
        storage_dtype: Dtype of cached features.
    """

    answers_concepts = True
    segments_everything = False

    def __init__(
        self, models: Sam3Models, *, name: str, facts: EngineFacts, storage_dtype: torch.dtype
    ) -> None:
        if models.tracker is None:  # concepts only: say so in /v1/models and refuse clicks with the reason
            facts = EngineFacts(
                family=facts.family,
                prompt_kinds=tuple(k for k in facts.prompt_kinds if k in CONCEPT_PROMPT_KINDS),
                automask_defaults=facts.automask_defaults,
            )
        super().__init__(Sam3Predictor(models), name=name, facts=facts, storage_dtype=storage_dtype)
        self.models = models

    @property
    def image_size(self) -> int:
        return int(self.models.processor.image_processor.size["height"])

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Clicks and boxes: three ranked masks per object (the tracker head)."""
        return [self._decode_one(request) for request in requests]

    def _decode_one(self, request: DecodeRequest) -> DecodeResult:
        self.point_at(request.image)
        prompt = request.prompt
        mask_input = None if request.mask_input is None else request.mask_input.cpu().numpy()
        out = self.predictor.predict(
            point_coords=prompt.points,
            point_labels=prompt.labels,
            box=prompt.boxes,
            mask_input=mask_input,
            multimask_output=request.multimask,
        )
        stability = out.stability_scores if out.stability_scores is not None else np.zeros_like(out.scores)
        best = torch.from_numpy(np.ascontiguousarray(out.low_res_logits[:, :1]))
        return DecodeResult(out.masks, out.scores, stability, best)

    def concepts(
        self,
        image: EncodedImage,
        *,
        text: str | None,
        exemplars: list[tuple[list[float], bool]] | None,
        threshold: float,
    ) -> list[Instance]:
        """Every instance, from transformers' own post-processing, best score first."""
        self.point_at(image)
        return self.predictor.predict_concept(text, exemplars, threshold=threshold)
