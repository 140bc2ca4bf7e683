"""Pure functions on mask logits and binary masks (torch).

Logits are the decoder's raw outputs; a pixel belongs to the mask when its
logit is above ``mask_threshold`` (0.0).
"""

from __future__ import annotations

import numpy as np
import torch

MASK_THRESHOLD = 0.0


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
