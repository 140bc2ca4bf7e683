"""What the model server answers, as Python objects (shared by both clients and the service).

Coordinates follow the house plan: pixels of the original image, ``(x, y)``,
origin top-left; masks ``HxW`` bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ImageInfo:
    """What the server knows about an uploaded image.

    Attributes:
        image_id: SHA-256 (hex) of the decoded pixels, shared by all clients.
        width: Width in pixels, after EXIF orientation.
        height: Height in pixels, after EXIF orientation.
    """

    image_id: str
    width: int
    height: int


@dataclass
class ObjectMasks:
    """Ranked candidate masks for one object (one prompt set or one box).

    Attributes:
        masks: ``KxHxW`` bool, K = 3 in multimask mode else 1, best first.
        scores: ``K`` float32 predicted IoU, descending.
        stability_scores: ``K`` float32 stability scores (IoU of the mask
            thresholded at +1 and -1 around the 0 logit).
        logits_id: Id of the low-res logits of the *best* mask, to pass back
            as ``mask_input`` to refine this object on the next click.
        labels: Optional per-candidate text (text prompts: the matched text).
        box: ``4`` float32 XYXY pixel box of the object as the model detected
            it (SAM 3 concept instances), else None.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray
    logits_id: str | None = None
    labels: list[str] = field(default_factory=list)
    box: np.ndarray | None = None

    @property
    def best(self) -> np.ndarray:
        """``HxW`` bool, the top-ranked mask."""
        return self.masks[0]


def lower_thresholds(thresholds: dict[str, Any]) -> tuple[float, float]:
    """``(pred_iou_thresh, stability_score_thresh)`` to suggest after segment-everything kept
    nothing: 0.2 and 0.15 below those applied (never below 0; 0.6 and 0.8 where not known)."""
    iou = thresholds.get("pred_iou_thresh")
    stability = thresholds.get("stability_score_thresh")
    lower_iou = max(0.0, round(float(iou) - 0.2, 2)) if isinstance(iou, (int, float)) else 0.6
    lower_stability = (
        max(0.0, round(float(stability) - 0.15, 2)) if isinstance(stability, (int, float)) else 0.8
    )
    return lower_iou, lower_stability


def empty_automask_note(thresholds: dict[str, Any]) -> str:
    """What to tell a person when segment-everything kept no mask, and how to get some.

    Args:
        thresholds: The filter thresholds that were applied (``pred_iou_thresh``,
            ``stability_score_thresh``); missing ones are described as the model's defaults.
    """
    iou = thresholds.get("pred_iou_thresh")
    stability = thresholds.get("stability_score_thresh")
    applied = ", ".join(
        f"{name} {value:g}" if isinstance(value, (int, float)) else f"{name} (the model's default)"
        for name, value in (("pred_iou_thresh", iou), ("stability_score_thresh", stability))
    )
    lower_iou, lower_stability = lower_thresholds(thresholds)
    return (
        f"segment-everything found no mask that passed its filters ({applied}); "
        f"lower them, e.g. pred_iou_thresh={lower_iou:g} and stability_score_thresh={lower_stability:g}"
    )
