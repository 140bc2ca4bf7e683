"""Disk cache of image embeddings for training with a frozen image encoder.

Each embedding is computed once by the (frozen) encoder and stored as
``<directory>/<sha256>.pt`` where the hash covers the encoder's identity (a
name chosen by the caller, e.g. the base model), the image key and the
normalised input pixels, so a changed image or encoder never hits a stale
entry. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from backend.atomic_files import atomic_open

if TYPE_CHECKING:
    from backend.model import Sam


class EmbeddingCache:
    """Embeddings of training images, on disk.

    Args:
        directory: Folder of the cache (created when missing).
        encoder_name: Identity of the frozen encoder (base model name or
            weights path); part of every key.
    """

    def __init__(self, directory: str | Path, *, encoder_name: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.encoder_name = encoder_name

    def embeddings(self, sam: Sam, images: torch.Tensor, keys: list[str]) -> torch.Tensor:
        """Embeddings of a batch, computing and storing the missing ones.

        Args:
            sam: The network whose (frozen) image encoder is used.
            images: ``Bx3xSxS`` float32 normalised, padded model inputs.
            keys: ``B`` stable image identifiers.

        Returns:
            ``BxCxExE`` embeddings (no gradient), on the images' device.
        """
        out = []
        for image, key in zip(images, keys, strict=True):
            path = self.directory / f"{self._digest(image, key)}.pt"
            if path.exists():
                out.append(torch.load(path, map_location=images.device, weights_only=True))
                continue
            with torch.no_grad():
                embedding = sam.image_encoder(image[None])[0].float()
            _atomic_save(embedding.cpu(), path)
            out.append(embedding)
        return torch.stack(out).to(images.dtype)

    def _digest(self, image: torch.Tensor, key: str) -> str:
        digest = hashlib.sha256(f"{self.encoder_name}\0{key}\0".encode())
        digest.update(image.detach().to(torch.float16).cpu().numpy().tobytes())
        return digest.hexdigest()


def _atomic_save(tensor: torch.Tensor, path: Path) -> None:
    with atomic_open(path, "wb") as stream:
        torch.save(tensor, stream)
