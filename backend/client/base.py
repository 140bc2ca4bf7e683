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
from pathlib import Path
from typing import Any

import numpy as np

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.priority import Priority
from backend.api.prompt import Prompt

ImageSource = str | Path | bytes | np.ndarray | Any  # Any: a PIL.Image.Image
"""A path, encoded image bytes, an ``HxWx3`` uint8 RGB array or a PIL image."""


class SamClientBase(ABC):
    """Talks to one model server (remote or in-process)."""

    @abstractmethod
    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        """Register an image; its embedding is computed once and cached.

        Uploads only when the server does not already hold the image.

        Args:
            image: A path, encoded bytes, an ``HxWx3`` uint8 RGB array or a PIL image.
            model: The served model whose embedding to compute (default: the server's first).
            priority: ``bulk`` for batch work (pre-annotation, precomputing a
                project): the encoding waits behind everyone's interactive
                requests and gets the server's bulk deadline.
        """

    @abstractmethod
    def predict(
        self, image_id: str, prompt: Prompt | None = None, *, model: str | None = None, **fields: Any
    ) -> list[ObjectMasks]:
        """Masks for a prompt: one :class:`ObjectMasks` per object.

        Give a :class:`~backend.api.prompt.Prompt`, or its fields as keywords::

            client.predict(image_id, points=[[120, 80]], labels=[1])
            client.predict(image_id, Prompt(box=(10, 10, 200, 150), multimask=False))

        Args:
            image_id: From :meth:`add_image`.
            prompt: The prompt (``points`` ``Nx2`` pixel ``(x, y)``, ``labels``
                ``N`` with 1 foreground and 0 background, ``box``
                ``[x1, y1, x2, y2]``, ``boxes`` ``Bx4`` one object each,
                ``mask_input`` a ``logits_id`` to refine, ``text``, ``multimask``).
            model: The served model that answers (default: the server's first).
            **fields: The prompt's fields, instead of ``prompt``.

        Raises:
            InvalidInput: An unknown field name (before anything is sent).
        """

    @abstractmethod
    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Segment everything: SA-1B records, ``segmentation`` as COCO RLE.

        Args:
            image_id: From :meth:`add_image`.
            model: The served model (default: the server's first).
            **params: Generator parameters (``points_per_side``, ``pred_iou_thresh``...).
        """

    @abstractmethod
    def models(self) -> list[dict[str, Any]]:
        """The loaded model(s): name, image size, device, dtype."""

    @abstractmethod
    def ready(self) -> bool:
        """True when the model is loaded and can answer."""
