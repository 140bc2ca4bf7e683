"""SAM 1 and MobileSAM behind the engine interface, with micro-batched decoding.

Several predict requests with equal signatures (same image size and prompt
shape) share one mask-decoder call: each prompt is paired with its own
image's embedding (``BxCxExE``). Segment-everything runs
:class:`~backend.inference.automask.AutomaskGenerator` on the cached
embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.inference.engine import (
    DecodeRequest,
    DecodeResult,
    EncodedImage,
    EngineFacts,
    PredictorEngine,
)
from backend.inference.mask_ops import upscale_in_chunks
from backend.inference.predictor import SamPredictor
from backend.model import Sam


class SamEngine(PredictorEngine):
    """A ``Sam`` network (ViT-B/L/H or TinyViT) served through :class:`SamPredictor`.

    Args:
        model: The network in eval mode, on its device and dtype.
        name: The model's name in the API.
        facts: The family's facts from the model record.
        storage_dtype: Dtype of cached embeddings.
    """

    def __init__(self, model: Sam, *, name: str, facts: EngineFacts, storage_dtype: torch.dtype) -> None:
        super().__init__(SamPredictor(model), name=name, facts=facts, storage_dtype=storage_dtype)

    def max_requests_per_call(self) -> int:
        """All on an accelerator; on a CPU as many as keep the decoder's working set in cache."""
        return self.predictor.prompts_per_decoder_call()

    def encode(self, pixels: np.ndarray) -> EncodedImage:
        """``HxWx3`` uint8 -> ``1xCxExE`` embedding in the storage dtype."""
        embedding = self.predictor.compute_embedding(pixels).to(self.storage_dtype).contiguous()
        return EncodedImage(
            features=embedding,
            original_size=(pixels.shape[0], pixels.shape[1]),
            nbytes=embedding.numel() * embedding.element_size(),
        )

    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Requests of one signature in as few decoder calls as :meth:`max_requests_per_call` allows.

        The server's batch size is the largest any served model takes; this
        model's own limit splits a larger group (a CPU with ``vit_b`` next to
        the demo model decodes its requests one by one).
        """
        cap, results = self.max_requests_per_call(), []
        group: list[DecodeRequest] = []
        for request in requests:
            if group and sum(r.batch_size for r in group) + request.batch_size > cap:
                results += self._decode_group(group)
                group = []
            group.append(request)
        return results + self._decode_group(group)

    def _decode_group(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """One decoder call for all requests (see the module docstring)."""
        size = requests[0].original_size
        sizes = [request.batch_size for request in requests]
        # one request: its 1xCxExE embedding is broadcast by the decoder; several: one embedding per prompt
        embedding = requests[0].image.features
        if len(requests) > 1:
            embedding = torch.cat(
                [r.image.features.expand(n, -1, -1, -1) for r, n in zip(requests, sizes, strict=True)]
            )
        points = _per_prompt([_tensor(r.prompt.points, leading=True) for r in requests], sizes)
        labels = _per_prompt([_tensor(r.prompt.labels, leading=True) for r in requests], sizes)
        boxes = _per_prompt([_tensor(r.prompt.boxes, leading=False) for r in requests], sizes)
        masks = _per_prompt([r.mask_input for r in requests], sizes)
        device = self.device
        points, labels, boxes, masks = (
            None if t is None else t.to(device) for t in (points, labels, boxes, masks)
        )
        with torch.inference_mode():
            low_res, scores = self.predictor.predict_torch(
                points,
                labels,
                boxes,
                masks,
                multimask_output=requests[0].multimask,
                embedding=embedding.to(self.dtype),
                original_size=size,
            )
            all_masks, stability = upscale_in_chunks(
                lambda chunk: self.predictor.upscale_logits(chunk, size), low_res, size
            )
            all_scores = scores.float().cpu().numpy()
            best = low_res[:, :1].float()
        results, start = [], 0
        for n in sizes:
            end = start + n
            results.append(
                DecodeResult(
                    all_masks[start:end], all_scores[start:end], stability[start:end], best[start:end]
                )
            )
            start = end
        return results


def _tensor(array: np.ndarray | None, *, leading: bool) -> torch.Tensor | None:
    """numpy -> tensor, with a leading batch axis of 1 when ``leading``."""
    if array is None:
        return None
    tensor = torch.from_numpy(array)
    return tensor[None] if leading else tensor


def _per_prompt(parts: list[torch.Tensor | None], sizes: list[int]) -> torch.Tensor | None:
    """Concatenate per-request ``1x...`` or ``nx...`` tensors, each expanded to its request's n prompts."""
    if parts[0] is None:
        return None
    return torch.cat([p.expand(n, *p.shape[1:]) for p, n in zip(parts, sizes, strict=True) if p is not None])
