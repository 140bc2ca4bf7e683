"""SAM 2.1 (image mode) behind the engine interface.

The cached features are the embedding plus the two high-resolution maps
(:class:`~backend.model.sam2.image_features.Sam2ImageFeatures`); a request
points :class:`Sam2Predictor` at them (the prompt-independent decoder work
is then kept for the next click on the same image) and decodes its prompts.
Requests are decoded one at a time: the high-resolution maps make a shared
call across images cost more than it saves.
"""

from __future__ import annotations

import torch

from backend.inference.engine import (
    DecodeRequest,
    DecodeResult,
    EngineFacts,
    PredictorEngine,
)
from backend.inference.mask_ops import upscale_in_chunks
from backend.inference.sam2_predictor import LOW_RES_LOGIT_LIMIT, Sam2Predictor
from backend.model.sam2 import Sam2


class Sam2Engine(PredictorEngine):
    """A ``Sam2`` network served through :class:`Sam2Predictor`.

    Args:
        model: The network in eval mode, on its device and dtype.
        name: The model's name in the API.
        facts: The family's facts from the model record.
        storage_dtype: Dtype of cached features.
    """

    def __init__(self, model: Sam2, *, name: str, facts: EngineFacts, storage_dtype: torch.dtype) -> None:
        super().__init__(Sam2Predictor(model), name=name, facts=facts, storage_dtype=storage_dtype)

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Each request on its own image (see the module docstring)."""
        return [self._decode_one(request) for request in requests]

    def _decode_one(self, request: DecodeRequest) -> DecodeResult:
        self.point_at(request.image)
        prompt, device, batch = request.prompt, self.device, request.batch_size
        points = labels = boxes = masks = None
        if prompt.points is not None and prompt.labels is not None:
            points = torch.from_numpy(prompt.points).to(device)[None].expand(batch, -1, -1)
            labels = torch.from_numpy(prompt.labels).to(device)[None].expand(batch, -1)
        if prompt.boxes is not None:
            boxes = torch.from_numpy(prompt.boxes).to(device)
        if request.mask_input is not None:
            masks = request.mask_input.to(device).expand(batch, -1, -1, -1)
        size = request.original_size
        with torch.inference_mode():
            out = self.predictor.decode_torch(
                points, labels, boxes, masks, multimask_output=request.multimask
            )
            scores, order = out.iou_pred.float().sort(dim=1, descending=True)
            low_res = torch.gather(out.masks.float(), 1, order[:, :, None, None].expand_as(out.masks))
            # masks from the unclamped logits, as Meta's; the kept logits clamped, as its predictor returns them
            all_masks, stability = upscale_in_chunks(
                lambda chunk: self.predictor.upscale_logits(chunk, size), low_res, size
            )
            best = low_res[:, :1].clamp(-LOW_RES_LOGIT_LIMIT, LOW_RES_LOGIT_LIMIT)
            return DecodeResult(all_masks, scores.cpu().numpy(), stability, best)
