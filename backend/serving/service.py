"""SamService: the served models, their stores and the model thread, without HTTP.

The Flask app and :class:`~backend.serving.local_client.LocalSamClient` both
call this class, so a notebook with its own GPU and a remote client get the
same answers and the same errors.

It composes four parts, each in its own module:

* model hosts (:mod:`backend.serving.model_host`): one per served model,
  loaded on the model thread, each answering through its family's
  :class:`~backend.inference.engine.ModelEngine`; requests name a model with
  ``model`` (default: the first);
* stores (:mod:`backend.serving.stores`): encoded images per model, pixels and
  refinement logits, each a byte-bounded LRU shared by all models;
* the model thread (:mod:`backend.serving.model_thread`): every forward pass
  runs there. Each request gets a :class:`~backend.serving.scheduling.Ticket`:
  interactive (predict, image upload; ``config.timeout_s``) or bulk
  (segment-everything, text prompts, ``priority=bulk`` uploads;
  ``config.bulk_timeout_s``). Interactive work runs before bulk work, bulk
  work runs in slices, and a job stops at its deadline or when its client
  disconnects (``abandoned``);
* segment-everything records and text ranking
  (:class:`~backend.serving.special_prompts.AutomaskRunner`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import numpy as np

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import InvalidInput, NotFound, PayloadTooLarge
from backend.api.priority import Priority
from backend.api.prompt import Prompt
from backend.api.prompt_kinds import FIELD_KINDS
from backend.byte_lru import CacheStats
from backend.inference.engine import DecodeRequest, DecodeResult, EncodedImage, Instance, ModelEngine
from backend.inference.prompts import check_prompt
from backend.serving.config import ServerConfig
from backend.serving.gpu_worker import GpuWorker
from backend.serving.model_host import ModelHost
from backend.serving.model_thread import ModelThread
from backend.serving.scheduling import Ticket
from backend.serving.special_prompts import (
    AutomaskRunner,
    check_automask_params,
    check_text_prompt,
    clip_text_prompter,
)
from backend.serving.stores import ServiceStores, image_key

AUTO_MAX_BATCH = 16
"""Prompts per micro-batched decoder call with ``max_batch=0`` on an accelerator;
on a CPU fewer when the model's per-prompt decoder work would leave the cache
(:meth:`ModelEngine.max_requests_per_call`: 1 at SAM's sizes, so no batching)."""
MAX_MASK_PIXELS = 1024 * 1024 * 1024
"""Most mask pixels (objects x candidates x height x width) one request may ask for."""
MiB = 1024 * 1024


def _decode_group(requests: list[DecodeRequest]) -> list[DecodeResult]:
    """Runs on the model thread: requests of one signature (so of one engine) in one decoder call."""
    return requests[0].engine.decode(requests)


class SamService:
    """Serves one or more SAM models to any number of threads.

    Args:
        config: What to load (``config.model`` and ``config.extra_models``:
            names, checkpoint paths or built networks) and the budgets.
        text_prompter_factory: Builds the CLIP ranker on first use (tests
            inject a fake); default: ``backend.inference.text.TextPrompter``
            with ``config.clip_model`` and ``config.clip_root``.

    Raises:
        InvalidInput: Two served models with the same name.
    """

    def __init__(
        self, config: ServerConfig, *, text_prompter_factory: Callable[[str], Any] | None = None
    ) -> None:
        self.config = config
        hosts = [ModelHost(spec, config) for spec in config.models]
        self._hosts = {host.name: host for host in hosts}
        if len(self._hosts) != len(hosts):
            raise InvalidInput(f"each model may be served once; got {[host.name for host in hosts]}")
        self.model_name = hosts[0].name
        """The default model: requests that name none get it."""
        self._thread = ModelThread(config, _decode_group)
        self._stores = ServiceStores(config, self._thread.worker)
        self._special = AutomaskRunner(
            store_bytes=config.automask_store_mb * MiB,
            text_prompter_factory=text_prompter_factory or partial(clip_text_prompter, config),
            max_points=config.max_automask_points,
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> SamService:
        """Start the model thread; the models load on it, in order (see :meth:`ready`)."""
        self.worker.start()
        for host in self._hosts.values():
            self.worker.submit(partial(self._load, host), bounded=False)
        return self

    def _load(self, host: ModelHost) -> None:
        host.load()
        if host.ready() and self.config.max_batch == 0:
            engines = [h.engine for h in self._hosts.values() if h.ready()]
            # the largest any model takes; each engine splits a group above its own limit
            self.worker.max_batch = min(AUTO_MAX_BATCH, max(e.max_requests_per_call() for e in engines))

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every model is loaded (or failed to load); True if the default model is ready."""
        for host in self._hosts.values():
            host.wait_settled(timeout)
        return self.ready()

    def close(self) -> None:
        """Stop the model thread after the queued work."""
        self.worker.stop()

    @property
    def worker(self) -> GpuWorker:
        """The model thread's worker (its queue, batch size and counters)."""
        return self._thread.worker

    @property
    def model_names(self) -> list[str]:
        """The served models' names, default first (as ``GET /v1/models`` lists them)."""
        return list(self._hosts)

    @property
    def load_error(self) -> BaseException | None:
        """Why the default model failed to load, or None."""
        return self._host(None).load_error

    def ready(self) -> bool:
        """True when the default model is loaded and requests can be answered."""
        return self._host(None).ready()

    def require_ready(self, model: str | None = None) -> None:
        """Raise :class:`ServiceUnavailable` (or the load error) unless the model is loaded."""
        self.engine(model)

    def _host(self, model: str | None) -> ModelHost:
        name = self.model_name if model is None else model
        host = self._hosts.get(name)
        if host is None:
            plus_sent_raw = any(served.replace("+", " ") == name for served in self._hosts if "+" in served)
            hint = "; a '+' in a query string arrives as a space: send it as %2B" if plus_sent_raw else ""
            raise NotFound(
                f"unknown model {name!r}; this server serves {list(self._hosts)} (GET /v1/models){hint}",
                echoes=(name,),
            )
        return host

    def engine(self, model: str | None = None) -> ModelEngine:
        """The loaded engine of a served model (default: :attr:`model_name`).

        Raises:
            NotFound: The server does not serve that model (the message lists those it does).
            ServiceUnavailable: Still loading, or failed to load.
        """
        return self._host(model).engine

    # ---------------------------------------------------------------- info
    def models(self) -> list[dict[str, Any]]:
        """Every served model: name, readiness, segment-everything defaults and, once loaded, its facts."""
        return [{**host.info(), **self._batch_info(host)} for host in self._hosts.values()]

    def _batch_info(self, host: ModelHost) -> dict[str, Any]:
        """The model's own batch: the worker's, cut to what one of its decoder calls takes."""
        if not host.ready():
            return {}
        return {"max_batch": min(self.worker.max_batch, host.engine.max_requests_per_call())}

    def queue_depth(self) -> int:
        """Work items waiting for the model thread."""
        return self.worker.queue_depth()

    def bulk_jobs(self) -> int:
        """Bulk jobs (segment-everything, text, bulk uploads) waiting or running."""
        return self.worker.bulk_jobs()

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
        return self.worker.decoder_calls

    @property
    def encoder_calls(self) -> int:
        """Image encodings run so far, all models together."""
        return self._stores.encoder_calls

    @property
    def automask_limit(self) -> int:
        """Most point prompts one segment-everything request may decode."""
        return self._special.max_points

    def cache_stats(self) -> dict[str, CacheStats]:
        """Counters of the stores and the segment-everything records."""
        return {**self._stores.stats(), "automask": self._special.stats()}

    # -------------------------------------------------------------- images
    def add_image(
        self,
        image: bytes | np.ndarray,
        *,
        model: str | None = None,
        priority: Priority = Priority.INTERACTIVE,
        abandoned: Callable[[], bool] | None = None,
    ) -> ImageInfo:
        """Decode (bytes) or take (``HxWx3`` uint8) an image and cache the model's encoding of it.

        The same picture twice computes once, also when concurrent.

        Args:
            image: Encoded image bytes, or ``HxWx3`` uint8 RGB pixels.
            model: The model whose encoding to cache (default: :attr:`model_name`).
            priority: ``BULK`` for batch pre-annotation: the encoding waits
                for interactive work (and gets the bulk deadline).
            abandoned: Returns True once the caller's client has gone.

        Raises:
            InvalidImage: Undecodable bytes. PayloadTooLarge: over ``max_pixels``.
            NotFound: A model this server does not serve.
            QueueFull: The model thread's queue for this priority is full.
            DeadlineExceeded: Not encoded within the deadline.
        """
        from backend.formats.images import compute_image_id, decode_image, load_image

        engine = self.engine(model)
        if isinstance(image, (bytes, bytearray, memoryview)):
            pixels = decode_image(bytes(image), max_pixels=self.config.max_pixels)
        else:
            pixels = load_image(image, max_pixels=self.config.max_pixels)
        image_id = compute_image_id(pixels)
        self._stores.keep_pixels(image_id, pixels)
        ticket = self.ticket(priority, abandoned)
        if priority is Priority.BULK:
            encoded = self._stores.encoded(engine, image_id, pixels, ticket)
        else:
            with self.interactive_request():
                encoded = self._stores.encoded(engine, image_id, pixels, ticket)
        return _image_info(image_id, encoded)

    def image_info(self, image_id: str, *, model: str | None = None) -> ImageInfo:
        """What is known about an uploaded image whose encoding by the model is cached (or can be made).

        Raises:
            NotFound: The image was never uploaded or was evicted; an unknown model.
        """
        return _image_info(image_id, self._encoded(self.engine(model), image_id))

    def image_size(self, image_id: str, *, model: str | None = None) -> tuple[int, int]:
        """``(height, width)`` in pixels of an uploaded image, without encoding it or counting a
        cache use (what the answer budget needs before a prediction).

        Raises:
            NotFound: The image was never uploaded or was evicted; an unknown model.
        """
        size = self._stores.size(self.engine(model), image_id)
        if size is None:
            raise _unknown_image(image_id)
        return size

    def _encoded(self, engine: ModelEngine, image_id: str, ticket: Ticket | None = None) -> EncodedImage:
        """The cached encoding, or one made from the held pixels (an image uploaded for another model)."""
        encoded = self._stores.cached(engine, image_id)
        if encoded is not None:
            return encoded
        pixels = self._stores.pixels(image_id)
        if pixels is not None:
            return self._stores.encoded(engine, image_id, pixels, ticket or self.ticket(Priority.INTERACTIVE))
        raise _unknown_image(image_id)  # a 404: clients upload again, which works for any size

    def _refuse_oversized(self, image_id: str) -> None:
        """Raise :class:`PayloadTooLarge` when ``image_id``'s pixels were never held for their size
        ("upload the image again" cannot help segment-everything or a text prompt; a larger
        ``--image-store-mb`` can)."""
        nbytes = self._stores.oversized(image_id)
        if nbytes is not None:
            raise PayloadTooLarge(
                f"the pixels of image {image_id!r} ({nbytes / MiB:.1f} MiB) are larger than the server's "
                f"image store (--image-store-mb {self.config.image_store_mb}), so they were not kept, and "
                "segment-everything and text prompts need them; the server's operator can raise "
                "--image-store-mb (SAM_IMAGE_STORE_MB)"
            )

    def pixels_for(self, image_id: str) -> np.ndarray:
        """Decoded ``HxWx3`` uint8 pixels of a recently added image.

        Raises:
            NotFound: Never uploaded, or its pixels were evicted.
        """
        pixels = self._stores.pixels(image_id)
        if pixels is None:
            self._refuse_oversized(image_id)
            raise NotFound(
                f"the pixels of image {image_id!r} are no longer held (they are needed for automask and text "
                "prompts); upload the image again with POST /v1/images (add_image)"
            )
        return pixels

    # ------------------------------------------------------------- predict
    def predict(
        self,
        image_id: str,
        prompt: Prompt | None = None,
        *,
        model: str | None = None,
        abandoned: Callable[[], bool] | None = None,
        **fields: Any,
    ) -> list[ObjectMasks]:
        """Ranked masks for a prompt: one :class:`ObjectMasks` per object.

        Args:
            image_id: From :meth:`add_image`.
            prompt: Points, boxes, an earlier mask and/or text.
            model: The model that answers (default: :attr:`model_name`).
            abandoned: Returns True once the caller's client has gone.
            **fields: The prompt's fields, instead of ``prompt``.

        A text prompt is bulk work: on SAM 3 every instance of the concept
        (with ``exemplars`` too), one object each, best score first; on the
        other families segment-everything candidates ranked by CLIP, one object.

        Raises:
            NotFound: Unknown ``image_id``, ``mask_input`` or model.
            InvalidInput: A prompt the model cannot answer (see :func:`check_prompt`).
            ServiceUnavailable: Model not loaded, or out of GPU memory; QueueFull: queue full.
            DeadlineExceeded: Not answered within the deadline.
        """
        prompt = Prompt.of(prompt, **fields)
        engine = self.engine(model)
        _check_prompt_kinds(engine, prompt)
        if engine.answers_concepts and (prompt.text is not None or prompt.exemplars is not None):
            return self._predict_concepts(engine, image_id, prompt, self.ticket(Priority.BULK, abandoned))
        if prompt.text is not None:
            return self._predict_text(
                engine, image_id, prompt, prompt.text, self.ticket(Priority.BULK, abandoned)
            )
        ticket = self.ticket(Priority.INTERACTIVE, abandoned)
        # announced to the worker, which waits for it while batching, and marked as interactive
        with self.interactive_request(), self._thread.decode_announced():
            encoded = self._encoded(engine, image_id, ticket)
            height, width = encoded.original_size
            checked = check_prompt(
                width=width,
                height=height,
                points=prompt.points,
                labels=prompt.labels,
                box=prompt.box,
                boxes=prompt.boxes,
                has_mask_input=prompt.mask_input is not None,
            )
            _check_answer_size(checked.batch_size, 3 if prompt.multimask else 1, encoded.original_size)
            logits = None
            if prompt.mask_input is not None:
                logits = self._stores.logits(prompt.mask_input, engine, image_id)
            request = DecodeRequest(engine, encoded, checked, logits, prompt.multimask)
            result: DecodeResult = self._thread.decode(request, ticket)
        return self._objects(engine, image_id, result)

    def _objects(self, engine: ModelEngine, image_id: str, result: DecodeResult) -> list[ObjectMasks]:
        return [
            ObjectMasks(
                masks=result.masks[i],
                scores=result.scores[i],
                stability_scores=result.stability_scores[i],
                logits_id=self._stores.keep_logits(engine, image_id, result.best_logits[i : i + 1]),
            )
            for i in range(len(result.masks))
        ]

    def _predict_concepts(
        self, engine: ModelEngine, image_id: str, prompt: Prompt, ticket: Ticket
    ) -> list[ObjectMasks]:
        """Every instance of a concept (SAM 3): one object each, best score first."""
        for name in ("points", "box", "boxes", "mask_input"):
            if getattr(prompt, name) is not None:
                raise InvalidInput(
                    f"a concept prompt (text, exemplars) finds every instance: send {name} in another request "
                    "(it gives ranked masks for one object)"
                )
        encoded = self._encoded(engine, image_id, ticket)
        exemplars = None
        if prompt.exemplars is not None:
            exemplars = [(list(e.box), e.positive) for e in prompt.exemplars]
        threshold = DEFAULT_CONCEPT_THRESHOLD if prompt.threshold is None else prompt.threshold
        work = partial(engine.concepts, encoded, text=prompt.text, exemplars=exemplars, threshold=threshold)
        instances = self._thread.run(work, ticket)
        label = prompt.text or "exemplar"
        return [_instance_object(instance, label) for instance in instances]

    # ----------------------------------------------- automask and text
    def automask(
        self,
        image_id: str,
        *,
        model: str | None = None,
        abandoned: Callable[[], bool] | None = None,
        **params: Any,
    ) -> list[dict[str, Any]]:
        """Segment everything: SA-1B records (``segmentation`` COCO RLE), cached per model and parameters.

        Bulk work, run in slices; ``abandoned`` returns True once the caller's client has gone.

        Raises:
            NotFound: Unknown image or model, or the image's pixels were evicted.
            InvalidInput: Unknown or out-of-range generator parameters; a model without segment-everything.
            PayloadTooLarge: More point prompts than ``config.max_automask_points``.
            QueueFull: ``config.max_bulk_jobs`` bulk jobs are already queued or running.
            DeadlineExceeded: Not done within ``config.bulk_timeout_s``.
        """
        engine = self.engine(model)
        self._special.check(params, engine.facts.automask_defaults)
        return self._automask(engine, image_id, params, self.ticket(Priority.BULK, abandoned))

    def _automask(
        self, engine: ModelEngine, image_id: str, params: dict[str, Any], ticket: Ticket
    ) -> list[dict[str, Any]]:
        encoded = self._encoded(engine, image_id, ticket)
        pixels = self.pixels_for(image_id)

        def run(full: dict[str, Any]) -> list[dict[str, Any]]:
            work = partial(engine.segment_everything, encoded, pixels, full, self.worker.checkpoint)
            return self._thread.run(work, ticket)

        return self._special.automask(
            key=image_key(engine, image_id),
            pixels=pixels,
            params=params,
            model_defaults=engine.facts.automask_defaults,
            run=run,
        )

    def automask_thresholds(self, params: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
        """The filter thresholds an automask request with ``params`` applies (the model's where absent)."""
        full = check_automask_params(params, self.engine(model).facts.automask_defaults)
        return {name: full[name] for name in ("pred_iou_thresh", "stability_score_thresh")}

    def _predict_text(
        self, engine: ModelEngine, image_id: str, prompt: Prompt, text: str, ticket: Ticket
    ) -> list[ObjectMasks]:
        """CLIP-ranked segment-everything candidates for ``text`` as one object (see :class:`AutomaskRunner`)."""
        size = self._stores.size(engine, image_id)  # no encoding before the checks below
        if size is None:
            raise _unknown_image(image_id)
        height, width = size
        checked = check_text_prompt(
            text,
            width=width,
            height=height,
            points=prompt.points,
            labels=prompt.labels,
            box=prompt.box,
            boxes=prompt.boxes,
            mask_input=prompt.mask_input,
        )
        self._special.check_ranker(str(engine.device))
        key = image_key(engine, image_id)
        records = self._automask(engine, image_id, self._special.text_candidate_params(key), ticket)
        return self._special.rank_text(
            pixels=self.pixels_for(image_id),
            records=records,
            text=text,
            prompt=checked,
            device=str(engine.device),
            run=lambda fn: self._thread.run(fn, ticket),
            checkpoint=self.worker.checkpoint,
        )


DEFAULT_CONCEPT_THRESHOLD = 0.5
"""Score above which a concept instance is kept when a request gives no ``threshold`` (transformers' default)."""


def _instance_object(instance: Instance, label: str) -> ObjectMasks:
    """One concept instance as an object with one mask (its stability score repeats its score:
    the detector hands back no logits to compute one from)."""
    score = np.asarray([instance.score], dtype=np.float32)
    return ObjectMasks(
        masks=instance.mask[None], scores=score, stability_scores=score, labels=[label], box=instance.box
    )


def _unknown_image(image_id: str) -> NotFound:
    return NotFound(f"unknown image_id {image_id!r}: upload the image with POST /v1/images (add_image) first")


def _image_info(image_id: str, encoded: EncodedImage) -> ImageInfo:
    return ImageInfo(image_id=image_id, width=encoded.original_size[1], height=encoded.original_size[0])


def _check_prompt_kinds(engine: ModelEngine, prompt: Prompt) -> None:
    """Refuse prompt kinds the model does not answer, naming those it does."""
    given = [kind for name, kind in FIELD_KINDS.items() if getattr(prompt, name) is not None]
    missing = [kind for kind in given if kind not in engine.facts.prompt_kinds]
    if missing:
        raise InvalidInput(
            f"the model {engine.name!r} ({engine.facts.family}) does not answer {', '.join(missing)} prompts; "
            f"it answers {', '.join(engine.facts.prompt_kinds)}"
        )
    concept = prompt.text is not None or prompt.exemplars is not None
    if prompt.threshold is not None and not (engine.answers_concepts and concept):
        raise InvalidInput(
            "threshold applies to concept prompts (text or exemplars) on a SAM 3 model; "
            f"the model {engine.name!r} ({engine.facts.family}) ranks candidates instead: omit threshold"
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
