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
from pathlib import Path
from typing import Any

import numpy as np

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.priority import Priority

ImageSource = str | Path | bytes | np.ndarray | Any  # Any: a PIL.Image.Image
"""A path, encoded image bytes, an ``HxWx3`` uint8 RGB array or a PIL image."""


class SamClientBase(ABC):
    """Talks to one model server (remote or in-process)."""

    @abstractmethod
    def add_image(self, image: ImageSource, *, priority: Priority | str = Priority.INTERACTIVE) -> ImageInfo:
        """Register an image; its embedding is computed once and cached.

        Uploads only when the server does not already hold the image.

        Args:
            image: A path, encoded bytes, an ``HxWx3`` uint8 RGB array or a PIL image.
            priority: ``bulk`` for batch work (pre-annotation, precomputing a
                project): the encoding waits behind everyone's interactive
                requests and gets the server's bulk deadline.
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
