"""What training needs from each model family: one small adapter per family.

The training loop (:mod:`backend.train.loop`), the prompting rounds
(:mod:`backend.train.simulation`) and the embedding cache
(:mod:`backend.train.embedding_cache`) are written once, against
:class:`TrainingAdapter`; :func:`training_adapter` picks the adapter of a
network. An adapter says:

* the family's **model-input frame** (:meth:`~TrainingAdapter.model_input`):
  the normalised image and its masks as the network sees them, so that the
  simulated clicks, the targets and the loss all live in that frame;
* the **image features** (:meth:`~TrainingAdapter.encode`): a tuple of
  batch-first tensors (what the embedding cache stores with a frozen
  encoder);
* the **decoder call** (:meth:`~TrainingAdapter.decoder`): prompts in the
  model-input frame -> low-res logits, predicted IoU (and an object score),
  with autograd;
* what **--freeze-encoder** freezes (:meth:`~TrainingAdapter.freeze_encoder`).

Families:

* **SAM / MobileSAM** (:class:`SamAdapter`): longest side resized to
  ``S = image_size`` and the rest zero-padded (bottom, right), SAM's
  normalisation; one feature tensor (the image embedding); frozen: the image
  encoder.
* **SAM 2.1** (:class:`Sam2Adapter`): the image stretched to ``S x S`` (aspect
  ratio not kept) and normalised by :meth:`Sam2.preprocess`, exactly as at
  inference; features ``(image_embed, feat_s0, feat_s1)``
  (:class:`~backend.model.sam2.Sam2ImageFeatures`); a box is two points
  labelled 2 and 3 ahead of the clicks, as in the predictor. The decoder
  runs through :meth:`Sam2.prepare_decoder` and :meth:`Sam2.decode` (their
  fast paths switch to the functional path while autograd records). Frozen:
  the image encoder **and** the mask decoder's ``conv_s0`` / ``conv_s1`` and
  ``no_mem_embed``, which :meth:`Sam2.encode_image` applies inside the
  encoder pass, so their outputs are what is cached.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from backend.api.errors import InvalidInput
from backend.model import Sam
from backend.model.config import SamConfig
from backend.model.pixels import normalize_and_pad
from backend.model.sam2 import Sam2, Sam2Config, Sam2ImageFeatures
from backend.train.datasets import TrainingImage, resize_for_model, resize_masks

Features = tuple[Tensor, ...]
"""Image features of a batch: batch-first tensors, one per part (SAM: 1, SAM 2.1: 3)."""


@dataclass(frozen=True)
class Prompts:
    """Prompts of ``N`` objects in the model-input frame.

    Attributes:
        coords: ``NxPx2`` float ``(x, y)`` clicks in model-input pixels (``P`` may be 0).
        labels: ``NxP`` int64, 1 positive, 0 negative.
        boxes: ``Nx4`` float XYXY boxes in model-input pixels, or None.
    """

    coords: Tensor
    labels: Tensor
    boxes: Tensor | None


@dataclass(frozen=True)
class Decoded:
    """One decoder call for ``N`` objects.

    Attributes:
        low_res: ``NxMxLxL`` mask logits (M = 3 with multimask output, else 1).
        iou_pred: ``NxM`` predicted IoU.
        object_score_logits: ``Nx1`` object-presence logits, or None for a
            family without an object-score head.
    """

    low_res: Tensor
    iou_pred: Tensor
    object_score_logits: Tensor | None = None


Decoder = Callable[[Prompts, Tensor | None, bool], Decoded]
"""``(prompts, mask_input Nx1xLxL or None, multimask_output) -> Decoded`` for a fixed set of features."""


class TrainingAdapter(ABC):
    """One network seen by the training code (see the module docstring).

    Args:
        network: The network, trained in place.
    """

    family: str = ""
    """The family's name in checkpoints and records (``sam``, ``sam2.1``)."""
    cache_tag: str = ""
    """Part of every embedding-cache key, so that features of two families never mix."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side ``S`` of the square model input."""

    @property
    @abstractmethod
    def config(self) -> SamConfig | Sam2Config:
        """The network's configuration (what checkpoints store)."""

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @abstractmethod
    def model_input(self, item: TrainingImage, device: torch.device) -> tuple[Tensor, np.ndarray]:
        """An item in the model-input frame.

        Returns:
            ``(pixels 3xSxS float32 normalised, masks Kxhxw bool)`` with the
            masks aligned to the top-left corner of the model input
            (``h, w <= S``; the batch pads them to ``S x S``).
        """

    @abstractmethod
    def encode(self, images: Tensor) -> Features:
        """``Bx3xSxS`` model inputs -> their features (with autograd when it records)."""

    @abstractmethod
    def decoder(self, features: Features) -> Decoder:
        """The decoder call for objects whose image features are ``features`` (one row per object)."""

    @abstractmethod
    def frozen_by_freeze_encoder(self) -> list[nn.Module | nn.Parameter]:
        """What ``--freeze-encoder`` freezes: everything that computes the cached features."""

    def freeze_encoder(self) -> None:
        """Stop training what computes the image features (no gradient; modules in eval mode)."""
        for part in self.frozen_by_freeze_encoder():
            part.requires_grad_(False)
            if isinstance(part, nn.Module):
                part.eval()


class SamAdapter(TrainingAdapter):
    """SAM and MobileSAM (:class:`backend.model.Sam`)."""

    family = "sam"
    cache_tag = ""  # the keys of caches written before there were several families

    network: Sam

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def config(self) -> SamConfig:
        if self.network.config is None:
            raise InvalidInput(
                "the model carries no SamConfig; build it with backend.model.build_sam(config)"
            )
        return self.network.config

    def model_input(self, item: TrainingImage, device: torch.device) -> tuple[Tensor, np.ndarray]:
        config = self.config
        item = resize_for_model(item, config.image_size)
        pixels = torch.from_numpy(np.array(item.image, copy=True)).permute(2, 0, 1).to(device)
        normalised = normalize_and_pad(
            pixels,
            pixel_mean=config.pixel_mean,
            pixel_std=config.pixel_std,
            size=config.image_size,
            dtype=torch.float32,
        )
        return normalised, item.masks

    def encode(self, images: Tensor) -> Features:
        return (self.network.image_encoder(images),)

    def decoder(self, features: Features) -> Decoder:
        sam = self.network
        (embeddings,) = features
        image_pe = sam.prompt_encoder.get_dense_pe()

        def decode(prompts: Prompts, mask_input: Tensor | None, multimask: bool) -> Decoded:
            points = (prompts.coords, prompts.labels) if prompts.coords.shape[1] else None
            sparse, dense = sam.prompt_encoder(points=points, boxes=prompts.boxes, masks=mask_input)
            low_res, iou_pred = sam.mask_decoder(
                image_embeddings=embeddings,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            return Decoded(low_res, iou_pred)

        return decode

    def frozen_by_freeze_encoder(self) -> list[nn.Module | nn.Parameter]:
        return [self.network.image_encoder]


class Sam2Adapter(TrainingAdapter):
    """SAM 2.1 image networks (:class:`backend.model.sam2.Sam2`)."""

    family = "sam2.1"
    cache_tag = "sam2.1"

    network: Sam2

    @property
    def image_size(self) -> int:
        return self.network.image_size

    @property
    def config(self) -> Sam2Config:
        return self.network.config

    def model_input(self, item: TrainingImage, device: torch.device) -> tuple[Tensor, np.ndarray]:
        size = self.image_size
        pixels = torch.from_numpy(np.array(item.image, copy=True)).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            normalised = self.network.preprocess(pixels)[0].float()
        return normalised, resize_masks(item.masks, size, size)

    def encode(self, images: Tensor) -> Features:
        return tuple(self.network.encode_image(images))

    def decoder(self, features: Features) -> Decoder:
        network = self.network
        cache = network.prepare_decoder(Sam2ImageFeatures(*features))
        scores = network.sam_mask_decoder.pred_obj_scores

        def decode(prompts: Prompts, mask_input: Tensor | None, multimask: bool) -> Decoded:
            coords, labels = prompts.coords, prompts.labels
            if prompts.boxes is not None:  # two points labelled 2 and 3, ahead of the clicks
                corners = prompts.boxes.reshape(-1, 2, 2).to(coords.dtype)
                corner_labels = labels.new_tensor([2, 3]).expand(len(corners), -1)
                coords = torch.cat([corners, coords], dim=1)
                labels = torch.cat([corner_labels, labels], dim=1)
            points = (coords, labels) if coords.shape[1] else None
            out = network.decode(cache, points, mask_input, multimask)
            return Decoded(out.masks, out.iou_pred, out.object_score_logits if scores else None)

        return decode

    def frozen_by_freeze_encoder(self) -> list[nn.Module | nn.Parameter]:
        network = self.network
        frozen: list[nn.Module | nn.Parameter] = [network.image_encoder, network.no_mem_embed]
        decoder = network.sam_mask_decoder
        if decoder.use_high_res_features:
            frozen += [decoder.conv_s0, decoder.conv_s1]
        return frozen


ADAPTERS: dict[type[nn.Module], type[TrainingAdapter]] = {Sam: SamAdapter, Sam2: Sam2Adapter}
"""Network class -> its training adapter (a new family adds one entry)."""


def training_adapter(network: Any) -> TrainingAdapter:
    """The adapter of ``network`` (an adapter is returned as it is).

    Raises:
        InvalidInput: A network of no family that training supports.
    """
    if isinstance(network, TrainingAdapter):
        return network
    for network_type, adapter in ADAPTERS.items():
        if isinstance(network, network_type):
            return adapter(network)
    raise InvalidInput(
        f"training fine-tunes SAM, MobileSAM and SAM 2.1 networks (vit_h, vit_l, vit_b, vit_t, demo, "
        f"sam2.1_hiera_t/s/b+/l or their checkpoints); a {type(network).__name__} is none of them"
    )
