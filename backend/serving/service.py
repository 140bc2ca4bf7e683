"""SamService: the model, its caches and its GPU work queue, without HTTP.

The Flask app and :class:`~backend.client.local_client.LocalSamClient` both
call this class, so a notebook with its own GPU and a remote client get the
same answers and the same errors.

State kept per model:

* embedding cache: ``(model, image_id)`` -> ``1xCxExE`` embedding, LRU bounded
  in bytes (stored as float16 on CUDA by default);
* image store: ``image_id`` -> decoded ``HxWx3`` uint8 pixels, for
  segment-everything and text prompts (bounded; evicted images must be
  uploaded again);
* logits store: ``logits_id`` -> ``1x1xLxL`` low-res logits of a best mask,
  for refinement;
* automask store: segment-everything records per image and parameters, which
  text prompts reuse.

Every forward pass runs on the :class:`~backend.serving.gpu_worker.GpuWorker`
thread; callers block on futures. Each request gets a
:class:`~backend.serving.scheduling.Ticket`: interactive (predict, image
upload; ``config.timeout_s``) or bulk (segment-everything, text prompts,
``priority=bulk`` uploads; ``config.bulk_timeout_s``). Interactive work runs
before bulk work, bulk work runs in slices, and a job stops at its deadline
or when its client disconnects (``abandoned``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import numpy as np
import torch

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, NotFound, PayloadTooLarge, SamError, ServiceUnavailable
from backend.api.priority import Priority
from backend.inference.prompts import check_prompt
from backend.registry import automask_defaults_for
from backend.serving.batched_decoder import MAX_MASK_PIXELS, DecodeJob, DecodeResult, decode_group
from backend.serving.cache_entries import CachedEmbedding, StoredLogits
from backend.serving.config import ServerConfig
from backend.serving.embedding_cache import ByteBoundedLRU, CacheStats
from backend.serving.inflight_encodings import InflightEncodings
from backend.serving.model_loading import load_for_serving
from backend.serving.model_thread import ModelThread
from backend.serving.scheduling import Ticket
from backend.serving.special_prompts import (
    AutomaskRunner,
    check_automask_params,
    check_text_prompt,
    clip_text_prompter,
)

AUTO_MAX_BATCH = 16
"""Prompts per micro-batched decoder call with ``max_batch=0`` on an accelerator;
on a CPU fewer when the model's per-prompt decoder work would leave the cache
(:meth:`SamPredictor.prompts_per_decoder_call`: 1 at SAM's sizes, so no batching)."""

log = logging.getLogger(__name__)

MiB = 1024 * 1024


class SamService:
    """Serves one SAM model to any number of threads.

    Args:
        config: What to load and the cache budgets (``config.model`` may be a
            name, a checkpoint path or an already built ``Sam`` module).
        text_prompter_factory: Builds the CLIP ranker on first use (tests
            inject a fake); default: ``backend.inference.text.TextPrompter``
            with ``config.clip_model`` and ``config.clip_root``.
    """

    def __init__(
        self, config: ServerConfig, *, text_prompter_factory: Callable[[str], Any] | None = None
    ) -> None:
        self.config = config
        self.model_name = config.model_label
        self._model: Any = None
        self._predictor: Any = None
        self._device: torch.device | None = None
        self._storage_dtype: torch.dtype | None = None
        self._load_error: BaseException | None = None
        self._ready = threading.Event()
        self._embeddings: ByteBoundedLRU[CachedEmbedding] = ByteBoundedLRU(config.cache_mb * MiB)
        self._images: ByteBoundedLRU[np.ndarray] = ByteBoundedLRU(config.image_store_mb * MiB)
        self._logits: ByteBoundedLRU[StoredLogits] = ByteBoundedLRU(config.logits_store_mb * MiB)
        self.encoder_calls = 0
        self._thread = ModelThread(config, lambda jobs: decode_group(self._predictor, jobs))
        self._worker = self._thread.worker
        self._encodings = InflightEncodings(self._embeddings, self._worker)
        self._special = AutomaskRunner(
            store_bytes=config.automask_store_mb * MiB,
            model_defaults=automask_defaults_for(config.model),
            text_prompter_factory=text_prompter_factory or partial(clip_text_prompter, config),
            max_points=config.max_automask_points,
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> SamService:
        """Start the GPU worker; the model loads on it (see :meth:`ready`)."""
        self._worker.start()
        self._worker.submit(self._load, bounded=False)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (or failed to load); True if ready."""
        self._ready.wait(timeout)
        return self.ready()

    def close(self) -> None:
        """Stop the worker after the queued work."""
        self._worker.stop()

    @property
    def load_error(self) -> BaseException | None:
        """Why the model failed to load, or None."""
        return self._load_error

    def ready(self) -> bool:
        """True when the model is loaded and requests can be answered."""
        return self._model is not None

    def _load(self) -> None:
        try:
            loaded = load_for_serving(self.config)
            self._predictor, self._device = loaded.predictor, loaded.device
            self._storage_dtype = loaded.storage_dtype
            if self.config.max_batch == 0:
                self._worker.max_batch = min(AUTO_MAX_BATCH, self._predictor.prompts_per_decoder_call())
            self._model = loaded.model
            log.info("model %s loaded on %s (%s)", self.model_name, self._device, self._predictor.dtype)
        except BaseException as exc:  # noqa: BLE001 - reported by every later request
            # one line; the traceback only for --log-level DEBUG
            log.error(
                "cannot load model %s: %s", self.model_name, exc, exc_info=log.isEnabledFor(logging.DEBUG)
            )
            self._load_error = exc
        finally:
            self._ready.set()

    def require_ready(self) -> None:
        """Raise :class:`ServiceUnavailable` (or the load error) unless the model is loaded."""
        if self._model is not None:
            return
        if self._load_error is not None:
            if isinstance(self._load_error, SamError) and self._load_error.status == 503:
                raise self._load_error
            raise ServiceUnavailable(f"the model {self.model_name!r} failed to load: {self._load_error}")
        raise ServiceUnavailable(f"the model {self.model_name!r} is still loading; retry in a few seconds")

    # ---------------------------------------------------------------- info
    def models(self) -> list[dict[str, Any]]:
        """The loaded model: name, image size, device, dtype, ready."""
        info: dict[str, Any] = {
            "name": self.model_name,
            "ready": self.ready(),
            "automask_defaults": dict(self._special.model_defaults),
        }
        if self._model is not None:
            info.update(
                image_size=self._model.config.image_size,
                device=str(self._device),
                dtype=str(self._predictor.dtype).removeprefix("torch."),
                cache_dtype=str(self._storage_dtype).removeprefix("torch."),
                max_batch=self._worker.max_batch,
            )
        return [info]

    def queue_depth(self) -> int:
        """Work items waiting for the GPU worker."""
        return self._worker.queue_depth()

    def bulk_jobs(self) -> int:
        """Bulk jobs (segment-everything, text, bulk uploads) waiting or running."""
        return self._worker.bulk_jobs()

    def interactive_request(self) -> AbstractContextManager[None]:
        """Mark an interactive request as being answered: bulk work pauses at its checkpoints meanwhile.

        The service marks its own interactive calls; the HTTP routes also
        cover the encoding of the answer.
        """
        return self._thread.interactive_request()

    def ticket(self, priority: Priority, abandoned: Callable[[], bool] | None = None) -> Ticket:
        """A new request's ticket: its deadline from ``config.timeout_s`` or ``config.bulk_timeout_s``."""
        return self._thread.ticket(priority, abandoned)

    @property
    def decoder_calls(self) -> int:
        """Batched decoder calls run so far (micro-batching shares them)."""
        return self._worker.decoder_calls

    def cache_stats(self) -> dict[str, CacheStats]:
        """Counters of the embedding cache and the stores."""
        return {
            "embeddings": self._embeddings.stats(),
            "images": self._images.stats(),
            "logits": self._logits.stats(),
            "automask": self._special.stats(),
        }

    # -------------------------------------------------------------- images
    def add_image(
        self,
        image: bytes | np.ndarray,
        *,
        priority: Priority = Priority.INTERACTIVE,
        abandoned: Callable[[], bool] | None = None,
    ) -> ImageInfo:
        """Decode (bytes) or take (``HxWx3`` uint8) an image and cache its embedding.

        The same picture twice computes once, also when concurrent.

        Args:
            image: Encoded image bytes, or ``HxWx3`` uint8 RGB pixels.
            priority: ``BULK`` for batch pre-annotation: the encoding waits
                for interactive work (and gets the bulk deadline).
            abandoned: Returns True once the caller's client has gone.

        Raises:
            InvalidImage: Undecodable bytes. PayloadTooLarge: over ``max_pixels``.
            QueueFull: The model thread's queue for this priority is full.
            DeadlineExceeded: Not encoded within the deadline.
        """
        from backend.formats.images import compute_image_id, decode_image, load_image

        self.require_ready()
        if isinstance(image, (bytes, bytearray, memoryview)):
            pixels = decode_image(bytes(image), max_pixels=self.config.max_pixels)
        else:
            pixels = load_image(image, max_pixels=self.config.max_pixels)
        image_id = compute_image_id(pixels)
        self._images.put(image_id, pixels, pixels.nbytes)
        ticket = self.ticket(priority, abandoned)
        if priority is Priority.BULK:
            entry = self._ensure_embedding(image_id, pixels, ticket)
        else:
            with self.interactive_request():
                entry = self._ensure_embedding(image_id, pixels, ticket)
        return ImageInfo(image_id=image_id, width=entry.original_size[1], height=entry.original_size[0])

    def image_info(self, image_id: str) -> ImageInfo:
        """What is known about an uploaded image whose embedding is cached.

        Raises:
            NotFound: The image was never uploaded or was evicted.
        """
        entry = self._embedding_for(image_id)
        return ImageInfo(image_id=image_id, width=entry.original_size[1], height=entry.original_size[0])

    def _embedding_for(self, image_id: str, ticket: Ticket | None = None) -> CachedEmbedding:
        self.require_ready()
        entry = self._embeddings.get(self._key(image_id))
        if entry is not None:
            return entry
        pixels = self._images.get(image_id)
        if pixels is not None:
            return self._ensure_embedding(image_id, pixels, ticket or self.ticket(Priority.INTERACTIVE))
        raise NotFound(
            f"unknown image_id {image_id!r}: upload the image with POST /v1/images (add_image) first"
        )

    def pixels_for(self, image_id: str) -> np.ndarray:
        """Decoded ``HxWx3`` uint8 pixels of a recently added image.

        Raises:
            NotFound: Never uploaded, or its pixels were evicted.
        """
        pixels = self._images.get(image_id)
        if pixels is None:
            raise NotFound(
                f"the pixels of image {image_id!r} are no longer held (they are needed for automask and text "
                "prompts); upload the image again with POST /v1/images (add_image)"
            )
        return pixels

    def _key(self, image_id: str) -> str:
        return f"{self.model_name}:{image_id}"

    def _ensure_embedding(self, image_id: str, pixels: np.ndarray, ticket: Ticket) -> CachedEmbedding:
        """The cached entry, or encode once (see :class:`InflightEncodings`)."""
        return self._encodings.get(self._key(image_id), lambda: self._encode(pixels), ticket)

    def _encode(self, pixels: np.ndarray) -> CachedEmbedding:
        """Runs on the worker: ``HxWx3`` uint8 -> cache entry."""
        self.encoder_calls += 1
        embedding = self._predictor.compute_embedding(pixels)
        stored = embedding.to(self._storage_dtype).contiguous()
        return CachedEmbedding(embedding=stored, original_size=(pixels.shape[0], pixels.shape[1]))

    # ------------------------------------------------------------- predict
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
        abandoned: Callable[[], bool] | None = None,
    ) -> list[ObjectMasks]:
        """Ranked masks for a prompt: one :class:`ObjectMasks` per object.

        See :meth:`backend.client.base.SamClientBase.predict` for the arguments;
        ``abandoned`` returns True once the caller's client has gone. A text
        prompt is bulk work (segment-everything candidates ranked by CLIP).

        Raises:
            NotFound: Unknown ``image_id`` or ``mask_input``.
            InvalidInput: A prompt the model cannot answer (see :func:`check_prompt`).
            ServiceUnavailable: Model not loaded, or out of GPU memory; QueueFull: queue full.
            DeadlineExceeded: Not answered within the deadline.
        """
        if text is not None:
            ticket = self.ticket(Priority.BULK, abandoned)
            return self._predict_text(
                image_id,
                text,
                points=points,
                labels=labels,
                box=box,
                boxes=boxes,
                mask_input=mask_input,
                ticket=ticket,
            )
        ticket = self.ticket(Priority.INTERACTIVE, abandoned)
        # announced to the worker, which waits for it while batching, and marked as interactive
        with self.interactive_request(), self._thread.decode_announced():
            entry = self._embedding_for(image_id, ticket)
            prompt = check_prompt(
                width=entry.original_size[1],
                height=entry.original_size[0],
                points=points,
                labels=labels,
                box=box,
                boxes=boxes,
                has_mask_input=mask_input is not None,
            )
            _check_answer_size(prompt.batch_size, 3 if multimask else 1, entry.original_size)
            logits = self._stored_logits(mask_input, image_id) if mask_input is not None else None
            job = DecodeJob(
                embedding=entry.embedding,
                original_size=entry.original_size,
                prompt=prompt,
                mask_input=logits,
                multimask=multimask,
            )
            result: DecodeResult = self._thread.decode(job, ticket)
        return self._objects(image_id, result)

    def _stored_logits(self, logits_id: str, image_id: str) -> torch.Tensor:
        stored = self._logits.get(logits_id)
        if stored is None:
            raise NotFound(
                f"unknown logits_id {logits_id!r}: pass the logits_id of a recent answer, or omit mask_input"
            )
        if stored.image_id != image_id:
            raise InvalidInput(
                f"logits_id {logits_id!r} belongs to another image; use one from an answer on this image"
            )
        return stored.logits

    def _objects(self, image_id: str, result: DecodeResult) -> list[ObjectMasks]:
        objects = []
        for i in range(len(result.masks)):
            logits_id = uuid.uuid4().hex
            best = result.best_logits[i : i + 1]
            self._logits.put(logits_id, StoredLogits(image_id, best), best.numel() * best.element_size())
            objects.append(
                ObjectMasks(
                    masks=result.masks[i],
                    scores=result.scores[i],
                    stability_scores=result.stability_scores[i],
                    logits_id=logits_id,
                )
            )
        return objects

    # ----------------------------------------------- automask and text
    def automask(
        self, image_id: str, *, abandoned: Callable[[], bool] | None = None, **params: Any
    ) -> list[dict[str, Any]]:
        """Segment everything: SA-1B records (``segmentation`` COCO RLE), cached per parameters.

        Bulk work, run in slices; ``abandoned`` returns True once the caller's client has gone.

        Raises:
            NotFound: Unknown image, or its pixels were evicted.
            InvalidInput: Unknown or out-of-range generator parameters.
            PayloadTooLarge: More point prompts than ``config.max_automask_points``.
            QueueFull: ``config.max_bulk_jobs`` bulk jobs are already queued or running.
            DeadlineExceeded: Not done within ``config.bulk_timeout_s``.
        """
        self._special.check(params)
        return self._automask(image_id, params, self.ticket(Priority.BULK, abandoned))

    def _automask(self, image_id: str, params: dict[str, Any], ticket: Ticket) -> list[dict[str, Any]]:
        entry = self._embedding_for(image_id, ticket)
        pixels = self.pixels_for(image_id)
        return self._special.automask(
            key=self._key(image_id),
            pixels=pixels,
            params=params,
            run=lambda generate: self._thread.run(lambda: self._on_image(entry, generate), ticket),
            checkpoint=self._worker.checkpoint,
        )

    def automask_thresholds(self, params: dict[str, Any]) -> dict[str, Any]:
        """The filter thresholds an automask request with ``params`` applies (the model's where absent)."""
        full = check_automask_params(params, self._special.model_defaults)
        return {name: full[name] for name in ("pred_iou_thresh", "stability_score_thresh")}

    def _on_image(self, entry: CachedEmbedding, fn: Callable[[Any, Any], Any]) -> Any:
        """Runs on the worker: point the predictor at an image, then call ``fn(model, predictor)``."""
        self._predictor.set_embedding(entry.embedding, original_size=entry.original_size)
        return fn(self._model, self._predictor)

    def _predict_text(
        self,
        image_id: str,
        text: str,
        *,
        points: Any,
        labels: Any,
        box: Any,
        boxes: Any,
        mask_input: str | None,
        ticket: Ticket,
    ) -> list[ObjectMasks]:
        """CLIP-ranked segment-everything candidates as one object (see :class:`AutomaskRunner`)."""
        height, width = self._embedding_for(image_id, ticket).original_size
        prompt = check_text_prompt(
            text,
            width=width,
            height=height,
            points=points,
            labels=labels,
            box=box,
            boxes=boxes,
            mask_input=mask_input,
        )
        records = self._automask(image_id, self._special.text_candidate_params(self._key(image_id)), ticket)
        pixels = self.pixels_for(image_id)
        return self._special.rank_text(
            pixels=pixels,
            records=records,
            text=text,
            prompt=prompt,
            device=str(self._device),
            run=lambda fn: self._thread.run(fn, ticket),
            checkpoint=self._worker.checkpoint,
        )


def _check_answer_size(objects: int, candidates: int, size: tuple[int, int]) -> None:
    """Refuse answers too large to hold: objects x candidates full-size masks."""
    pixels = objects * candidates * size[0] * size[1]
    if pixels > MAX_MASK_PIXELS:
        most = max(1, MAX_MASK_PIXELS // (candidates * size[0] * size[1]))
        raise PayloadTooLarge(
            f"{objects} objects x {candidates} masks of {size[1]}x{size[0]} pixels is too large an answer; "
            f"send at most {most} boxes per request (or multimask=false)"
        )
