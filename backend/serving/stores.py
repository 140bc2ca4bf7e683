"""What the service keeps between requests, each store bounded in bytes.

* encoded images: ``(model, image_id)`` -> :class:`EncodedImage` (the
  features of every served model share one budget, ``config.cache_mb``);
  each picture is encoded once per model, however many requests ask at once;
* pixels: ``image_id`` -> decoded ``HxWx3`` uint8 pixels, for
  segment-everything, text prompts and encodings by another model
  (evicted images must be uploaded again);
* logits: ``logits_id`` -> ``1x1xLxL`` low-res logits of a best mask, for refinement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import torch

from backend.api.errors import InvalidInput, NotFound
from backend.byte_lru import ByteBoundedLRU, CacheStats
from backend.inference.engine import EncodedImage, ModelEngine
from backend.serving.config import ServerConfig
from backend.serving.gpu_worker import GpuWorker
from backend.serving.inflight_encodings import InflightEncodings
from backend.serving.scheduling import Ticket

MiB = 1024 * 1024


@dataclass(frozen=True)
class StoredLogits:
    """Low-res logits of one best mask, kept for refinement.

    Attributes:
        image_id: The image they belong to.
        model: The model that produced them (another model cannot refine with them).
        logits: ``1x1xLxL`` float32.
    """

    image_id: str
    model: str
    logits: torch.Tensor


class ServiceStores:
    """The service's three stores and its de-duplicated encodings.

    Args:
        config: The byte budgets.
        worker: The model thread, where encodings run.
    """

    def __init__(self, config: ServerConfig, worker: GpuWorker) -> None:
        self._encoded: ByteBoundedLRU[EncodedImage] = ByteBoundedLRU(config.cache_mb * MiB)
        self._pixels: ByteBoundedLRU[np.ndarray] = ByteBoundedLRU(config.image_store_mb * MiB)
        self._logits: ByteBoundedLRU[StoredLogits] = ByteBoundedLRU(config.logits_store_mb * MiB)
        self._oversized: ByteBoundedLRU[int] = ByteBoundedLRU(OVERSIZED_IDS_BYTES)
        self._encodings = InflightEncodings(self._encoded, worker)
        self.encoder_calls = 0

    def stats(self) -> dict[str, CacheStats]:
        """Counters of each store."""
        return {
            "embeddings": self._encoded.stats(),
            "images": self._pixels.stats(),
            "logits": self._logits.stats(),
        }

    # ---------------------------------------------------------------- pixels
    def keep_pixels(self, image_id: str, pixels: np.ndarray) -> None:
        """Hold an image's decoded pixels (or note their size when they alone exceed the budget)."""
        if not self._pixels.put(image_id, pixels, pixels.nbytes):
            self._oversized.put(image_id, pixels.nbytes, OVERSIZED_ID_COST)

    def oversized(self, image_id: str) -> int | None:
        """Bytes of a recent upload whose pixels were too large for the image store to hold, or None."""
        return self._oversized.peek(image_id)

    def pixels(self, image_id: str) -> np.ndarray | None:
        """The pixels of a recently added image, or None."""
        return self._pixels.get(image_id)

    def size(self, engine: ModelEngine, image_id: str) -> tuple[int, int] | None:
        """``(height, width)`` of an image whose encoding or pixels are held, or None; counts no
        cache use and keeps the eviction order (a look, not a use)."""
        encoded = self._encoded.peek(image_key(engine, image_id))
        if encoded is not None:
            return encoded.original_size
        pixels = self._pixels.peek(image_id)
        return None if pixels is None else (pixels.shape[0], pixels.shape[1])

    # ------------------------------------------------------- encoded images
    def cached(self, engine: ModelEngine, image_id: str) -> EncodedImage | None:
        """The model's cached encoding of an image, or None."""
        return self._encoded.get(image_key(engine, image_id))

    def encoded(self, engine: ModelEngine, image_id: str, pixels: np.ndarray, ticket: Ticket) -> EncodedImage:
        """The cached encoding, or encode once on the model thread (see :class:`InflightEncodings`)."""

        def encode() -> EncodedImage:
            self.encoder_calls += 1
            return engine.encode(pixels)

        return self._encodings.get(image_key(engine, image_id), encode, ticket)

    # ---------------------------------------------------------------- logits
    def keep_logits(self, engine: ModelEngine, image_id: str, best: torch.Tensor) -> str:
        """Keep one best mask's ``1x1xLxL`` logits; returns their ``logits_id``."""
        logits_id = uuid.uuid4().hex
        self._logits.put(
            logits_id, StoredLogits(image_id, engine.name, best), best.numel() * best.element_size()
        )
        return logits_id

    def logits(self, logits_id: str, engine: ModelEngine, image_id: str) -> torch.Tensor:
        """Logits kept for refinement of an object on this image by this model.

        Raises:
            NotFound: Unknown or evicted ``logits_id``.
            InvalidInput: They belong to another image or model.
        """
        stored = self._logits.get(logits_id)
        if stored is None:
            raise NotFound(
                f"unknown logits_id {logits_id!r}: pass the logits_id of a recent answer, or omit mask_input"
            )
        if stored.image_id != image_id:
            raise InvalidInput(
                f"logits_id {logits_id!r} belongs to another image; use one from an answer on this image"
            )
        if stored.model != engine.name:
            raise InvalidInput(
                f"logits_id {logits_id!r} comes from the model {stored.model!r}; refine with that model "
                f"or omit mask_input"
            )
        return stored.logits


OVERSIZED_IDS_BYTES = 1 << 20
"""Budget for remembering uploads too large for the image store (to say so instead of
"upload again"), at :data:`OVERSIZED_ID_COST` bytes an id: about 8,000 ids."""
OVERSIZED_ID_COST = 128

ImageKey = tuple[str, str]
"""``(model name, image_id)``: what the stores key a model's work on an image by."""


def image_key(engine: ModelEngine, image_id: str) -> ImageKey:
    """The key of ``engine``'s work on ``image_id``: a pair, so no image id can pose as
    another model's (both are client-chosen strings; ``f"{model}:{id}"`` could collide)."""
    return (engine.name, image_id)
