"""Prompt simulation from ground-truth masks, as in the SAM paper's training.

The first prompt of an object is a point drawn uniformly inside its mask or
its bounding box with noise; every further point is drawn uniformly from the
error region of the previous prediction (positive where the object was
missed, negative where background was included).

All tensors are in the model-input frame: masks are ``NxSxS`` bool at the
model's input resolution, points are ``(x, y)`` pixel coordinates in that
frame, boxes ``[x1, y1, x2, y2]``. Randomness comes from an explicit
``torch.Generator`` so a training step is reproducible from its seed.
"""

from __future__ import annotations

import torch


def sample_points(regions: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws one pixel uniformly from each region.

    Args:
        regions: ``NxHxW`` bool.
        generator: Source of randomness.

    Returns:
        ``(points Nx2 float32 (x, y) pixel centres, found N bool)``; where a
        region is empty, the point is ``(0, 0)`` and ``found`` is False.
    """
    n, h, w = regions.shape
    flat = regions.reshape(n, h * w)
    noise = torch.rand(flat.shape, generator=generator, device=regions.device) + 1e-6
    index = torch.argmax(noise * flat, dim=1)
    found = flat.any(dim=1)
    points = torch.stack([(index % w).float(), torch.div(index, w, rounding_mode="floor").float()], dim=1)
    return points, found


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of masks.

    Args:
        masks: ``NxHxW`` bool, each non-empty.

    Returns:
        ``Nx4`` float32 ``[x1, y1, x2, y2]``, inclusive pixel indices.
    """
    n, h, w = masks.shape
    cols = masks.any(dim=1)
    rows = masks.any(dim=2)
    xs = torch.arange(w, device=masks.device).expand(n, w)
    ys = torch.arange(h, device=masks.device).expand(n, h)
    x1 = torch.where(cols, xs, w).amin(dim=1)
    x2 = torch.where(cols, xs, -1).amax(dim=1)
    y1 = torch.where(rows, ys, h).amin(dim=1)
    y2 = torch.where(rows, ys, -1).amax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).float()


def noisy_boxes(
    masks: torch.Tensor, generator: torch.Generator, *, noise: float = 0.1, max_shift: float = 20.0
) -> torch.Tensor:
    """Bounding boxes with each corner shifted by Gaussian noise.

    The noise's standard deviation is ``noise`` times the box side (per
    axis), capped at ``max_shift`` pixels, as in the paper.

    Args:
        masks: ``NxHxW`` bool, each non-empty.
        generator: Source of randomness.
        noise: Standard deviation as a fraction of the box side.
        max_shift: Largest standard deviation, in pixels.

    Returns:
        ``Nx4`` float32 ``[x1, y1, x2, y2]`` clipped to the image.
    """
    boxes = mask_boxes(masks)
    _, h, w = masks.shape
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1) + 1
    sigma = (side * noise).clamp(max=max_shift).repeat(1, 2)
    jitter = torch.randn(boxes.shape, generator=generator, device=masks.device) * sigma
    shifted = boxes + jitter
    x1 = torch.minimum(shifted[:, 0], shifted[:, 2]).clamp(0, w - 1)
    x2 = torch.maximum(shifted[:, 0], shifted[:, 2]).clamp(0, w - 1)
    y1 = torch.minimum(shifted[:, 1], shifted[:, 3]).clamp(0, h - 1)
    y2 = torch.maximum(shifted[:, 1], shifted[:, 3]).clamp(0, h - 1)
    return torch.stack([x1, y1, x2, y2], dim=1)


def error_points(
    predicted: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next corrective click for each object, drawn from its error region.

    Args:
        predicted: ``NxHxW`` bool, the previous prediction.
        target: ``NxHxW`` bool, the ground truth.
        generator: Source of randomness.

    Returns:
        ``(points Nx2 float32 (x, y), labels N int64)``: label 1 when the
        point fell where the object was missed, 0 where background was
        included. Where the prediction is already exact, a positive point
        inside the object is returned.
    """
    missed = target & ~predicted
    points, found = sample_points(missed | (predicted & ~target), generator)
    inside, _ = sample_points(target, generator)
    points = torch.where(found[:, None], points, inside)
    xs, ys = points[:, 0].long(), points[:, 1].long()
    hit_missed = missed[torch.arange(len(points), device=points.device), ys, xs]
    labels = (hit_missed | ~found).long()
    return points, labels
