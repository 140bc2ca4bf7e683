"""Disk cache of image embeddings for training with a frozen image encoder.

Each image's features are computed once by the (frozen) encoder and stored as
``<directory>/<sha256>.pt`` where the hash covers the family
(:attr:`TrainingAdapter.cache_tag <backend.train.adapters.TrainingAdapter.cache_tag>`),
the encoder's identity (:func:`frozen_encoder_digest`: a hash of the frozen
weights themselves, not of the base model's name, which may name other
weights after a file is replaced), the image key and the normalised input
pixels, so a changed image, encoder or family never hits a stale entry. A file holds one tensor (SAM's embedding)
or a list of tensors (SAM 2.1's ``image_embed``, ``feat_s0``, ``feat_s1``),
in float32. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from backend.atomic_files import atomic_open
from backend.hub.checkpoint_files import save_interruptibly

if TYPE_CHECKING:
    from backend.model import Sam
    from backend.train.adapters import Features, TrainingAdapter


class EmbeddingCache:
    """Embeddings of training images, on disk.

    Args:
        directory: Folder of the cache (created when missing).
        encoder_name: Identity of the frozen encoder (:func:`frozen_encoder_digest`);
            part of every key.
    """

    def __init__(self, directory: str | Path, *, encoder_name: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.encoder_name = encoder_name

    def embeddings(self, sam: Sam, images: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """SAM's embeddings of a batch, computing and storing the missing ones.

        Args:
            sam: The network whose (frozen) image encoder is used.
            images: ``Bx3xSxS`` float32 normalised, padded model inputs.
            keys: ``B`` stable image identifiers.

        Returns:
            ``BxCxExE`` embeddings (no gradient), on the images' device.
        """
        from backend.train.adapters import training_adapter

        return self.features(training_adapter(sam), images, keys)[0]

    def features(self, adapter: TrainingAdapter, images: torch.Tensor, keys: list[str]) -> Features:
        """The features of a batch (any family), computing and storing the missing ones.

        Args:
            adapter: The network's training adapter; its (frozen) encoder is used.
            images: ``Bx3xSxS`` float32 model inputs (:meth:`TrainingAdapter.model_input`).
            keys: ``B`` stable image identifiers.

        Returns:
            :meth:`TrainingAdapter.encode`'s tuple for the batch (no gradient),
            on the images' device in their dtype.
        """
        rows: list[tuple[torch.Tensor, ...]] = []
        for image, key in zip(images, keys, strict=True):
            path = self.directory / f"{self._digest(image, key, adapter.cache_tag)}.pt"
            if path.exists():
                stored = torch.load(path, map_location=images.device, weights_only=True)
                rows.append((stored,) if isinstance(stored, torch.Tensor) else tuple(stored))
                continue
            with torch.no_grad():
                parts = tuple(part[0].float() for part in adapter.encode(image[None]))
            _atomic_save(parts[0].cpu() if len(parts) == 1 else [p.cpu() for p in parts], path)
            rows.append(parts)
        return tuple(torch.stack(part).to(images.dtype) for part in zip(*rows, strict=True))

    def _digest(self, image: torch.Tensor, key: str, tag: str = "") -> str:
        family = f"{tag}\0" if tag else ""  # none for SAM: the keys of caches written before
        digest = hashlib.sha256(f"{family}{self.encoder_name}\0{key}\0".encode())
        digest.update(image.detach().to(torch.float16).cpu().numpy().tobytes())
        return digest.hexdigest()


def frozen_encoder_digest(adapter: TrainingAdapter) -> str:
    """SHA-256 of every weight that computes the cached features (what ``--freeze-encoder``
    freezes, :meth:`TrainingAdapter.frozen_by_freeze_encoder`): about a second for vit_h's
    2.5 GB."""
    digest = hashlib.sha256()
    for part in adapter.frozen_by_freeze_encoder():
        tensors = part.state_dict().items() if isinstance(part, nn.Module) else [("", part)]
        for name, tensor in tensors:
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _atomic_save(tensor: torch.Tensor | list[torch.Tensor], path: Path) -> None:
    with atomic_open(path, "wb") as stream:
        save_interruptibly(tensor, stream)
