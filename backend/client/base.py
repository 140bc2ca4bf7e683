"""The one interface every client of the model server implements.

``SamClient`` (HTTP) and ``LocalSamClient`` (in-process, same semantics, no
HTTP) both implement :class:`SamClientBase`, so the Label Studio plugin and the
notebook widget never know which one they hold. Importing this module never
imports torch.

Coordinates follow the house plan: pixels of the original image, ``(x, y)``,
origin top-left; boxes ``[x1, y1, x2, y2]``; masks ``HxW`` bool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ImageSource = str | Path | bytes | np.ndarray | Any  # Any: a PIL.Image.Image
"""A path, encoded image bytes, an ``HxWx3`` uint8 RGB array or a PIL image."""


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
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray
    logits_id: str | None = None
    labels: list[str] = field(default_factory=list)

    @property
    def best(self) -> np.ndarray:
        """``HxW`` bool, the top-ranked mask."""
        return self.masks[0]


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
    lower_iou = max(0.0, round(float(iou) - 0.2, 2)) if isinstance(iou, (int, float)) else 0.6
    lower_stability = (
        max(0.0, round(float(stability) - 0.15, 2)) if isinstance(stability, (int, float)) else 0.8
    )
    return (
        f"segment-everything found no mask that passed its filters ({applied}); "
        f"lower them, e.g. pred_iou_thresh={lower_iou:g} and stability_score_thresh={lower_stability:g}"
    )


class SamClientBase(ABC):
    """Talks to one model server (remote or in-process)."""

    @abstractmethod
    def add_image(self, image: ImageSource) -> ImageInfo:
        """Register an image; its embedding is computed once and cached.

        Uploads only when the server does not already hold the image.
        """

    @abstractmethod
    def predict(
        self,
        image_id: str,
        *,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | None = None,
        boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
        mask_input: str | None = None,
        text: str | None = None,
        multimask: bool = True,
    ) -> list[ObjectMasks]:
        """Masks for a prompt: one :class:`ObjectMasks` per object.

        Args:
            image_id: From :meth:`add_image`.
            points: ``Nx2`` pixel ``(x, y)`` coordinates.
            labels: ``N`` ints, 1 = foreground, 0 = background.
            box: One ``[x1, y1, x2, y2]`` box in pixels.
            boxes: ``Bx4`` boxes, one object each (points then apply to all).
            mask_input: A ``logits_id`` from an earlier answer (refinement).
            text: A text prompt (CLIP), alone or with box / points.
            multimask: Three ranked candidates (True) or one mask (False).
        """

    @abstractmethod
    def automask(self, image_id: str, **params: Any) -> list[dict[str, Any]]:
        """Segment everything: SA-1B style records, ``segmentation`` as COCO RLE."""

    @abstractmethod
    def models(self) -> list[dict[str, Any]]:
        """The loaded model(s): name, image size, device, dtype."""

    @abstractmethod
    def ready(self) -> bool:
        """True when the model is loaded and can answer."""
