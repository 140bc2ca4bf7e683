"""One batched mask-decoder call for several requests (micro-batching).

The service turns each predict request into a :class:`DecodeJob`; the GPU
worker groups jobs whose :attr:`DecodeJob.signature` is equal (same image
size and prompt shape) and calls :func:`decode_group` once per group.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from backend.inference.mask_ops import above_threshold, stability_score
from backend.inference.prompts import Prompt

if TYPE_CHECKING:
    from backend.inference.predictor import SamPredictor

UPSCALE_CHUNK_PIXELS = 64 * 1024 * 1024
"""Most full-size logit pixels (float32: 4 bytes each) upscaled at once on a GPU."""
CPU_UPSCALE_CHUNK_PIXELS = 1024 * 1024
"""The same on a CPU, where the passes over the logits run from cache when
they stay near 4 MiB: for 16 requests on 640x480 images, one object's three
candidates at a time costs 0.7x the time per object of all 16 at once."""
MAX_MASK_PIXELS = 1024 * 1024 * 1024
"""Most mask pixels (objects x candidates x height x width) one request may ask for."""


@dataclass
class DecodeJob:
    """One request's work for the micro-batched decoder.

    Attributes:
        embedding: ``1xCxExE`` cached embedding (storage dtype, on the device).
        original_size: ``(H, W)`` of the image in pixels.
        prompt: The validated prompt (B objects).
        mask_input: ``1x1xLxL`` or ``Bx1xLxL`` float logits, or None.
        multimask: Three candidates per object (True) or one.
    """

    embedding: torch.Tensor
    original_size: tuple[int, int]
    prompt: Prompt
    mask_input: torch.Tensor | None
    multimask: bool

    @property
    def batch_size(self) -> int:
        """Objects in this job (B)."""
        return self.prompt.batch_size

    @property
    def signature(self) -> Hashable:
        """Jobs that can share a decoder call: same image size and prompt shape."""
        points = None if self.prompt.points is None else len(self.prompt.points)
        return (
            self.original_size,
            points,
            self.prompt.boxes is not None,
            self.mask_input is not None,
            self.multimask,
        )


@dataclass
class DecodeResult:
    """Decoder answer for one job (B objects, K candidates each, best first).

    Attributes:
        masks: ``BxKxHxW`` bool at the original size.
        scores: ``BxK`` float32 predicted IoU, descending.
        stability_scores: ``BxK`` float32.
        best_logits: ``Bx1xLxL`` float32 low-res logits of each best mask.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray
    best_logits: torch.Tensor


def decode_group(predictor: SamPredictor, jobs: list[DecodeJob]) -> list[DecodeResult]:
    """Jobs of one signature -> one decoder call -> one result per job.

    Runs on the GPU worker. With one job its ``1xCxExE`` embedding is
    broadcast over the job's prompts; with several, each prompt gets its own
    image's embedding (``BxCxExE``), which the decoder pairs one to one.
    """
    size = jobs[0].original_size
    sizes = [job.batch_size for job in jobs]
    first = jobs[0]
    # one job: its 1xCxExE embedding is broadcast by the decoder; several: one embedding per prompt
    embedding = first.embedding
    if len(jobs) > 1:
        embedding = torch.cat([j.embedding.expand(n, -1, -1, -1) for j, n in zip(jobs, sizes, strict=True)])
    points = _per_prompt([_tensor(j.prompt.points, leading=True) for j in jobs], sizes)
    labels = _per_prompt([_tensor(j.prompt.labels, leading=True) for j in jobs], sizes)
    boxes = _per_prompt([_tensor(j.prompt.boxes, leading=False) for j in jobs], sizes)
    masks = _per_prompt([j.mask_input for j in jobs], sizes)
    points, labels, boxes, masks = (
        None if t is None else t.to(predictor.device) for t in (points, labels, boxes, masks)
    )
    with torch.inference_mode():
        low_res, scores = predictor.predict_torch(
            points,
            labels,
            boxes,
            masks,
            multimask_output=first.multimask,
            embedding=embedding.to(predictor.dtype),
            original_size=size,
        )
        all_masks, stability = _upscale_in_chunks(predictor, low_res, size)
        all_scores = scores.float().cpu().numpy()
        best = low_res[:, :1].float()
    results, start = [], 0
    for n in sizes:
        end = start + n
        results.append(
            DecodeResult(all_masks[start:end], all_scores[start:end], stability[start:end], best[start:end])
        )
        start = end
    return results


def _upscale_in_chunks(
    predictor: SamPredictor, low_res: torch.Tensor, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``BxKxLxL`` logits -> ``BxKxHxW`` bool masks and ``BxK`` stability, a few objects at a time.

    Full-size float logits of many objects on a large image would need
    gigabytes at once; chunks keep the peak near ``UPSCALE_CHUNK_PIXELS``
    (``CPU_UPSCALE_CHUNK_PIXELS`` on a CPU).
    """
    per_object = low_res.shape[1] * size[0] * size[1]
    budget = CPU_UPSCALE_CHUNK_PIXELS if low_res.device.type == "cpu" else UPSCALE_CHUNK_PIXELS
    step = max(1, budget // per_object)
    masks, stability = [], []
    for start in range(0, low_res.shape[0], step):
        logits = predictor.upscale_logits(low_res[start : start + step], size).float()
        masks.append(above_threshold(logits).cpu().numpy())
        stability.append(stability_score(logits).cpu().numpy())
        del logits
    return np.concatenate(masks), np.concatenate(stability)


def _tensor(array: np.ndarray | None, *, leading: bool) -> torch.Tensor | None:
    """numpy -> tensor, with a leading batch axis of 1 when ``leading``."""
    if array is None:
        return None
    tensor = torch.from_numpy(array)
    return tensor[None] if leading else tensor


def _per_prompt(parts: list[torch.Tensor | None], sizes: list[int]) -> torch.Tensor | None:
    """Concatenate per-job ``1x...`` or ``nx...`` tensors, each expanded to its job's n prompts."""
    if parts[0] is None:
        return None
    return torch.cat([p.expand(n, *p.shape[1:]) for p, n in zip(parts, sizes, strict=True) if p is not None])
