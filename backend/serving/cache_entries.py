"""What the service's stores hold: cached embeddings and refinement logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.api.errors import InvalidInput

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class CachedEmbedding:
    """One cache entry.

    Attributes:
        embedding: ``1xCxExE`` on the model's device, storage dtype.
        original_size: ``(H, W)`` of the image in pixels.
    """

    embedding: torch.Tensor
    original_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Bytes counted against the cache budget."""
        return self.embedding.numel() * self.embedding.element_size()


@dataclass(frozen=True)
class StoredLogits:
    """Low-res logits of one best mask, kept for refinement."""

    image_id: str
    logits: torch.Tensor  # 1x1xLxL float32


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float16"`` / ``"bfloat16"`` -> torch dtype, or a clear error."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise InvalidInput(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None
