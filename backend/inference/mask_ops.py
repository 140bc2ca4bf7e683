"""Pure functions on mask logits and binary masks (torch).

Logits are the decoder's raw outputs; a pixel belongs to the mask when its
logit is above ``mask_threshold`` (0.0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import numpy as np
import torch

MASK_THRESHOLD = 0.0

UPSCALE_CHUNK_PIXELS = 64 * 1024 * 1024
"""Most full-size logit pixels (float32: 4 bytes each) upscaled at once on a GPU."""
CPU_UPSCALE_CHUNK_PIXELS = 1024 * 1024
"""The same on a CPU, where the passes over the logits run from cache when
they stay near 4 MiB: for 16 requests on 640x480 images, one object's three
candidates at a time costs 0.7x the time per object of all 16 at once."""


def stability_score(
    logits: torch.Tensor, mask_threshold: float = MASK_THRESHOLD, offset: float = 1.0
) -> torch.Tensor:
    """IoU between the masks thresholded at ``mask_threshold +/- offset``.

    A stable mask barely changes when the threshold moves, so the score is
    close to 1.

    Args:
        logits: ``...xHxW`` mask logits.
        mask_threshold: The 0-logit threshold of the model.
        offset: How far the threshold moves each way.

    Returns:
        ``...`` float32 scores in [0, 1] (1 for an empty mask at both thresholds).
    """
    intersections = count_above(logits, mask_threshold + offset)
    unions = count_above(logits, mask_threshold - offset)
    return torch.where(
        unions > 0,
        intersections.float() / unions.clamp(min=1).float(),
        torch.ones_like(unions, dtype=torch.float32),
    )


def above_threshold(logits: torch.Tensor, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """``logits > threshold`` as a bool tensor of the same shape.

    On CPU (float32) numpy's comparison does it: about three times faster than
    torch's there (`docs/models.md`).
    """
    if not _numpy_can_compare(logits):
        return logits > threshold
    return torch.from_numpy(np.greater(logits.numpy(), threshold))


def count_above(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Number of pixels of each ``HxW`` plane of ``...xHxW`` logits above ``threshold``:
    ``...`` int64 counts on the logits' device."""
    if not _numpy_can_compare(logits):
        return count_true(logits > threshold)
    planes = logits.reshape(-1, *logits.shape[-2:]).numpy()
    counts = [np.count_nonzero(np.greater(plane, threshold)) for plane in planes]
    return torch.tensor(counts, dtype=torch.int64).reshape(logits.shape[:-2])


def _numpy_can_compare(logits: torch.Tensor) -> bool:
    """Whether ``logits`` can be compared as a numpy view (CPU float32, no autograd)."""
    return logits.device.type == "cpu" and logits.dtype == torch.float32 and not logits.requires_grad


def count_true(masks: torch.Tensor) -> torch.Tensor:
    """Number of True pixels of each mask.

    On CPU numpy's ``count_nonzero`` is used plane by plane: it counts bytes
    an order of magnitude faster than a torch reduction over a bool tensor
    (which first widens every pixel to an integer).

    Args:
        masks: ``...xHxW`` bool, any strides.

    Returns:
        ``...`` int64 counts on the masks' device.
    """
    if masks.device.type != "cpu":
        return masks.sum(dim=(-1, -2))
    planes = masks.reshape(-1, *masks.shape[-2:]).numpy()
    counts = [np.count_nonzero(plane) for plane in planes]
    return torch.tensor(counts, dtype=torch.int64).reshape(masks.shape[:-2])


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes around binary masks; ``[0, 0, 0, 0]`` for an empty mask.

    Args:
        masks: ``...xHxW`` bool.

    Returns:
        ``...x4`` int64 boxes ``[x1, y1, x2, y2]`` with inclusive pixel indices.
    """
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)  # ...xH
    cols = masks.any(dim=-2)  # ...xW
    y_idx = torch.arange(height, device=masks.device)
    x_idx = torch.arange(width, device=masks.device)
    y2 = torch.where(rows, y_idx, -1).amax(dim=-1)
    x2 = torch.where(cols, x_idx, -1).amax(dim=-1)
    y1 = torch.where(rows, y_idx, height).amin(dim=-1)
    x1 = torch.where(cols, x_idx, width).amin(dim=-1)
    boxes = torch.stack([x1, y1, x2, y2], dim=-1)
    empty = ~rows.any(dim=-1)
    return torch.where(empty[..., None], torch.zeros_like(boxes), boxes)


@overload
def upscale_in_chunks(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    low_res: torch.Tensor,
    size: tuple[int, int],
    *,
    stability: Literal[True] = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def upscale_in_chunks(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    low_res: torch.Tensor,
    size: tuple[int, int],
    *,
    stability: bool,
) -> tuple[np.ndarray, np.ndarray | None]: ...


def upscale_in_chunks(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    low_res: torch.Tensor,
    size: tuple[int, int],
    *,
    stability: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``BxKxLxL`` logits -> ``BxKxHxW`` bool masks and ``BxK`` stability, a few objects at a time.

    Full-size float logits of many objects on a large image would need
    gigabytes at once (50 boxes on a 12-megapixel photo: 7 GB); chunks keep
    the peak near :data:`UPSCALE_CHUNK_PIXELS` (:data:`CPU_UPSCALE_CHUNK_PIXELS`
    on a CPU).

    Args:
        upscale: ``bxKxLxL`` -> ``bxKxHxW`` logits at the original size.
        low_res: The low-res logits.
        size: ``(H, W)`` of the original image.
        stability: Also compute the stability scores (else None is returned
            in their place).
    """
    objects, candidates = low_res.shape[0], low_res.shape[1]
    budget = CPU_UPSCALE_CHUNK_PIXELS if low_res.device.type == "cpu" else UPSCALE_CHUNK_PIXELS
    step = max(1, budget // (candidates * size[0] * size[1]))
    if step >= objects:  # one chunk (a click): its arrays are the answer, nothing copied
        return _masks_and_stability(upscale(low_res).float(), stability)
    # Filled in place: the chunks' masks never exist twice.
    masks = np.empty((objects, candidates, *size), dtype=bool)
    scores = np.empty((objects, candidates), dtype=np.float32) if stability else None
    for start in range(0, objects, step):
        chunk_masks, chunk_scores = _masks_and_stability(
            upscale(low_res[start : start + step]).float(), stability
        )
        masks[start : start + step] = chunk_masks
        if scores is not None:
            scores[start : start + step] = chunk_scores
    return masks, scores


def _masks_and_stability(logits: torch.Tensor, stability: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``bxKxHxW`` float logits -> bool masks and (when asked) ``bxK`` stability scores, as numpy."""
    masks = above_threshold(logits).cpu().numpy()
    return masks, stability_score(logits).cpu().numpy() if stability else None
