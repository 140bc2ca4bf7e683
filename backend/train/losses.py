"""The SAM paper's training losses.

Mask loss = ``20 * focal + 1 * dice`` per candidate; for an ambiguous prompt
only the candidate with the lowest loss is trained (the model is free to
spend its other outputs on other plausible objects). The IoU head learns the
actual IoU of every candidate with a mean-squared error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0


@dataclass(frozen=True)
class MaskLoss:
    """Losses of one batch of predictions.

    Attributes:
        total: Scalar, ``mask + iou``, averaged over objects.
        mask: Scalar, focal/dice loss of the chosen candidates.
        iou: Scalar, MSE of the IoU head over all candidates.
        best: ``N`` int64 index of the chosen candidate of each object.
        actual_iou: ``NxK`` float32 IoU of every candidate with the target.
    """

    total: torch.Tensor
    mask: torch.Tensor
    iou: torch.Tensor
    best: torch.Tensor
    actual_iou: torch.Tensor


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss averaged over pixels.

    Args:
        logits: ``NxKxHxW`` float mask logits.
        targets: ``NxHxW`` float in {0, 1}, broadcast over the K candidates.

    Returns:
        ``NxK`` float32 loss per candidate.
    """
    targets = targets[:, None].expand_as(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return (weight * ce * (1 - p_t) ** gamma).flatten(2).mean(dim=2)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft dice loss ``1 - (2|P∩T| + 1) / (|P| + |T| + 1)``.

    Args:
        logits: ``NxKxHxW`` float mask logits.
        targets: ``NxHxW`` float in {0, 1}.

    Returns:
        ``NxK`` float32 loss per candidate.
    """
    prob = logits.sigmoid().flatten(2)
    flat = targets.flatten(1)[:, None]
    overlap = (prob * flat).sum(dim=2)
    return 1 - (2 * overlap + 1) / (prob.sum(dim=2) + flat.sum(dim=2) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded logits (``> 0``) with the targets.

    Args:
        logits: ``NxKxHxW`` float mask logits.
        targets: ``NxHxW`` bool.

    Returns:
        ``NxK`` float32 IoU; 1 where both prediction and target are empty.
    """
    pred = (logits > 0).flatten(2)
    flat = targets.flatten(1)[:, None]
    inter = (pred & flat).sum(dim=2).float()
    union = (pred | flat).sum(dim=2).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    *,
    focal_weight: float = FOCAL_WEIGHT,
    dice_weight: float = DICE_WEIGHT,
) -> MaskLoss:
    """Ambiguity-aware mask loss plus IoU-head loss.

    Args:
        logits: ``NxKxHxW`` float mask logits at the targets' resolution.
        iou_pred: ``NxK`` float predicted IoU of each candidate.
        targets: ``NxHxW`` bool ground truth.
        focal_weight: Weight of the focal loss (paper: 20).
        dice_weight: Weight of the dice loss (paper: 1).

    Returns:
        The losses and, per object, the index of the trained candidate.
    """
    logits = logits.float()
    target_f = targets.float()
    per_candidate = focal_weight * sigmoid_focal_loss(logits, target_f) + dice_weight * dice_loss(
        logits, target_f
    )
    best = per_candidate.detach().argmin(dim=1)
    rows = torch.arange(len(best), device=best.device)
    mask = per_candidate[rows, best].mean()
    with torch.no_grad():
        actual = mask_iou(logits, targets)
    iou = F.mse_loss(iou_pred.float(), actual)
    return MaskLoss(total=mask + iou, mask=mask, iou=iou, best=best, actual_iou=actual)
