"""The interface every model family implements for the server: image -> cached features, prompt -> ranked masks.

A :class:`ModelEngine` wraps one loaded network of one family (SAM 1 and
MobileSAM in :mod:`backend.inference.sam_engine`, SAM 2.1 in
:mod:`backend.inference.sam2_engine`). The service knows only this
interface: it caches what :meth:`ModelEngine.encode` returns, hands
:class:`DecodeRequest` groups to :meth:`ModelEngine.decode` on the model
thread, and asks :meth:`ModelEngine.segment_everything` for SA-1B records.
Per-family facts (accepted prompt kinds, segment-everything defaults) come
from the model record, never from ``if family ==`` branches.

Coordinates are pixels of the original image, ``(x, y)``; masks ``HxW`` bool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backend.api.errors import InvalidInput
from backend.api.segment_everything import generator_defaults
from backend.inference.prompts import CheckedPrompt

Checkpoint = Callable[[], None]
"""Called between slices of long work; a model server runs waiting requests there, and stops the work by raising."""


@dataclass(frozen=True)
class EncodedImage:
    """What an engine caches per image: its features and the image size.

    Attributes:
        features: The family's features (SAM 1: a ``1xCxExE`` tensor; SAM 2.1:
            the embedding plus high-resolution maps), on the model's device,
            in the storage dtype.
        original_size: ``(H, W)`` of the image in pixels.
        nbytes: Bytes counted against the cache budget.
    """

    features: Any
    original_size: tuple[int, int]
    nbytes: int


@dataclass
class DecodeRequest:
    """One predict request's work for an engine's decoder.

    Attributes:
        engine: The engine that decodes it (requests of different engines never share a call).
        image: The cached image.
        prompt: The checked prompt (B objects).
        mask_input: ``1x1xLxL`` or ``Bx1xLxL`` float logits, or None.
        multimask: Three candidates per object (True) or one.
    """

    engine: ModelEngine
    image: EncodedImage
    prompt: CheckedPrompt
    mask_input: torch.Tensor | None
    multimask: bool

    @property
    def batch_size(self) -> int:
        """Objects in this request (B)."""
        return self.prompt.batch_size

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image in pixels."""
        return self.image.original_size

    @property
    def signature(self) -> Hashable:
        """Requests that can share a decoder call: same engine, image size and prompt shape."""
        points = None if self.prompt.points is None else len(self.prompt.points)
        return (
            self.engine.name,
            self.original_size,
            points,
            self.prompt.boxes is not None,
            self.mask_input is not None,
            self.multimask,
        )


@dataclass
class DecodeResult:
    """Decoder answer for one request (B objects, K candidates each, best first).

    Attributes:
        masks: ``BxKxHxW`` bool at the original size.
        scores: ``BxK`` float32 predicted IoU, descending.
        stability_scores: ``BxK`` float32.
        best_logits: ``Bx1xLxL`` float32 low-res logits of each best mask.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability_scores: np.ndarray
    best_logits: torch.Tensor


@dataclass(frozen=True)
class Instance:
    """One instance of a concept (SAM 3).

    Attributes:
        mask: ``HxW`` bool at the original image size.
        box: ``4`` float32 XYXY in original pixels: the detector's box, not the mask's.
        score: In ``[0, 1]``: the detector's query score times its presence score.
    """

    mask: np.ndarray
    box: np.ndarray
    score: float


@dataclass(frozen=True)
class EngineFacts:
    """What differs between families, read from the model record.

    Attributes:
        family: ``sam`` (SAM 1, MobileSAM) or ``sam2.1``.
        prompt_kinds: Prompt kinds the model answers (``points``, ``box``,
            ``boxes``, ``mask``, ``text``).
        automask_defaults: The model's segment-everything thresholds
            (``pred_iou_thresh``, ``stability_score_thresh``).
    """

    family: str
    prompt_kinds: tuple[str, ...] = ("points", "box", "boxes", "mask", "text")
    automask_defaults: dict[str, float] = field(default_factory=dict)


class ModelEngine(ABC):
    """One loaded model of one family, as the server uses it.

    All methods that touch the network run on the model thread, one at a time.
    A family that finds every instance of a concept (SAM 3) sets
    :attr:`answers_concepts` and implements :meth:`concepts`; the others answer
    text by ranking segment-everything candidates with CLIP.

    Args:
        name: The model's name in the API (``vit_b``, ``sam2.1_hiera_t``, a path).
        facts: The family's facts from the model record.
        storage_dtype: Dtype of cached features.
    """

    answers_concepts: bool = False
    """Text and exemplars find every instance (:meth:`concepts`), instead of CLIP ranking one object."""

    def __init__(self, *, name: str, facts: EngineFacts, storage_dtype: torch.dtype) -> None:
        self.name = name
        self.facts = facts
        self.storage_dtype = storage_dtype

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the network runs."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The network's compute dtype."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the square model input, in pixels."""

    @abstractmethod
    def encode(self, pixels: np.ndarray) -> EncodedImage:
        """``HxWx3`` uint8 RGB -> the features to cache (storage dtype, on the device)."""

    @abstractmethod
    def decode(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        """Requests of one :attr:`DecodeRequest.signature` -> one result each, candidates ranked."""

    def max_requests_per_call(self) -> int:
        """Most prompts one :meth:`decode` call should take (1: no micro-batching)."""
        return 1

    def segment_everything(
        self, image: EncodedImage, pixels: np.ndarray, params: dict[str, Any], checkpoint: Checkpoint
    ) -> list[dict[str, Any]]:
        """SA-1B records for the whole image (``segmentation`` COCO RLE).

        Args:
            image: The cached image.
            pixels: Its ``HxWx3`` uint8 pixels.
            params: Validated generator parameters.
            checkpoint: Called between slices of the work.

        Raises:
            InvalidInput: The family has no segment-everything.
        """
        raise InvalidInput(f"the model {self.name!r} ({self.facts.family}) cannot segment everything")

    def concepts(
        self,
        image: EncodedImage,
        *,
        text: str | None,
        exemplars: list[tuple[list[float], bool]] | None,
        threshold: float,
    ) -> list[Instance]:
        """Every instance of a concept (a phrase, example boxes, or both), best score first.

        Args:
            image: The cached image.
            text: A noun phrase, or None.
            exemplars: ``([x1, y1, x2, y2], positive)`` boxes in original pixels, or None.
            threshold: Keep instances scoring above this, in ``[0, 1]``.

        Raises:
            InvalidInput: The family has no concept prompts.
        """
        raise InvalidInput(f"the model {self.name!r} ({self.facts.family}) has no concept prompts")

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says about the loaded model (besides name and readiness)."""
        return {
            "family": self.facts.family,
            "prompts": list(self.facts.prompt_kinds),
            "image_size": self.image_size,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "cache_dtype": str(self.storage_dtype).removeprefix("torch."),
        }


class PredictorEngine(ModelEngine):
    """An engine over a family's predictor (``device``, ``dtype``, ``image_size``,
    ``compute_embedding``, ``set_embedding``): the shared parts of the families.

    The cached features are what ``compute_embedding`` returns, moved to the
    storage dtype (an object with ``to(device, dtype)`` and ``nbytes``; SAM 1
    overrides :meth:`encode` for its plain tensor).

    Args:
        predictor: The family's predictor over the loaded network.
        name: The model's name in the API.
        facts: The family's facts from the model record.
        storage_dtype: Dtype of cached features.
    """

    segments_everything: bool = True
    """Whether :meth:`segment_everything` answers (SAM 3 finds concepts instead)."""

    def __init__(self, predictor: Any, *, name: str, facts: EngineFacts, storage_dtype: torch.dtype) -> None:
        super().__init__(name=name, facts=facts, storage_dtype=storage_dtype)
        self.predictor = predictor
        self._current: EncodedImage | None = None

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.predictor.dtype

    @property
    def image_size(self) -> int:
        return int(self.predictor.image_size)

    def encode(self, pixels: np.ndarray) -> EncodedImage:
        """``HxWx3`` uint8 -> the predictor's features, in the storage dtype."""
        features = self.predictor.compute_embedding(pixels).to(self.device, self.storage_dtype)
        return EncodedImage(
            features=features, original_size=(pixels.shape[0], pixels.shape[1]), nbytes=features.nbytes
        )

    def point_at(self, image: EncodedImage) -> None:
        """Make ``image`` the predictor's current image (its per-image decoder work is kept while it stays)."""
        if self._current is not image:
            self.predictor.set_embedding(image.features, original_size=image.original_size)
            self._current = image

    def segment_everything(
        self, image: EncodedImage, pixels: np.ndarray, params: dict[str, Any], checkpoint: Checkpoint
    ) -> list[dict[str, Any]]:
        """SA-1B records from a point grid decoded on the cached features (crops encoded by a
        predictor of the same family), for the families with :attr:`segments_everything`."""
        if not self.segments_everything:
            return super().segment_everything(image, pixels, params, checkpoint)
        from backend.inference.automask import AutomaskGenerator

        self.point_at(image)
        # One batch of points per decoder call: the checkpoint between batches then lets
        # clicks in after at most one call (a batch of 64 is 64 calls of SAM 2.1 on a CPU,
        # about 2 s); the records are the same whatever the batch.
        per_call = self.predictor.prompts_per_decoder_call()
        asked = params.get("points_per_batch", generator_defaults()["points_per_batch"])
        params = {**params, "points_per_batch": min(asked, per_call)}
        generator = AutomaskGenerator(self.predictor.model, **params)
        return generator.generate(pixels, predictor=self.predictor, checkpoint=checkpoint)
