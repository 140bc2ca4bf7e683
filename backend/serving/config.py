"""Settings of one model server, shared by the CLI, the Flask app and the service.

Every field has a ``sam-server`` flag and a ``SAM_*`` environment variable
(see :mod:`backend.serving.cli`); tests build a :class:`ServerConfig` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTO_MAX_BATCH_HELP = (
    "16 on a GPU (cuda, mps); on a CPU up to 16, as many as keep one decoder call's image tokens within 4 MiB: "
    "16 for the demo model, 1 for vit_b, vit_l, vit_h and vit_t (their batched calls are slower on a CPU); "
    "with several models the largest of theirs, each model splitting larger groups"
)
"""What ``max_batch=0`` picks (the service computes it once the model is loaded:
``min(AUTO_MAX_BATCH, SamPredictor.prompts_per_decoder_call())``); the
``--max-batch`` help and docs/server.md say the same."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """What to load and how to serve it.

    Attributes:
        model: Registry name (``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``,
            ``demo``, ``sam2.1_hiera_*``, ``sam3``), a checkpoint path or a SAM 3
            folder; or an already built ``Sam`` module
            (tests, notebooks). The default model of requests that name none.
        extra_models: More models served side by side (names, paths, or
            ``(name, network)`` pairs); requests choose one with ``model``. All share the
            cache budgets and the model thread.
        device: ``auto`` (cuda, then mps, then cpu), or a torch device string.
        dtype: Model weights dtype: ``float32``, ``float16`` or ``bfloat16``.
        host: Interface to listen on.
        port: TCP port.
        token: When set, every route but ``/health`` needs
            ``Authorization: Bearer <token>``.
        cache_mb: Budget of the embedding cache, in MiB.
        image_store_mb: Budget for decoded pixels kept for segment-everything
            and text prompts, in MiB.
        logits_store_mb: Budget for low-res logits kept for refinement, in MiB.
        automask_store_mb: Budget for cached segment-everything results, in MiB.
        cache_dtype: Storage dtype of cached embeddings: ``auto`` (float16 on
            CUDA, the model's dtype elsewhere), ``float16``, ``float32``.
        max_pixels: Largest accepted image, in pixels (width x height).
        max_body_mb: Largest accepted request body, in MiB (413 above).
        max_batch: Most prompts per decoder call; 1 disables micro-batching;
            0 picks by device and model (:data:`AUTO_MAX_BATCH_HELP`).
        batch_wait_ms: Longest wait for more decode requests, in milliseconds.
        threads: HTTP handler threads (slow clients never hold one: see
            :mod:`backend.serving.front_end`).
        log_level: Python logging level name.
        plugins: Mount blueprints from the ``sam_server.blueprints`` entry points.
        clip_model: CLIP model of text prompts: a name (``ViT-B/32``) or a
            checkpoint path.
        clip_root: Folder of the CLIP weights files (None: ``~/.cache/clip``).
        timeout_s: Deadline of interactive work (predict, image upload), in
            seconds from the request's arrival; later it is dropped (504).
        bulk_timeout_s: Deadline of bulk work (segment-everything, text
            prompts, ``priority=bulk`` uploads), in seconds; a running job
            stops at its next slice.
        max_queue: Most interactive jobs waiting for the model thread (503
            with ``Retry-After`` above).
        max_bulk_jobs: Most bulk jobs waiting or running (503 with
            ``Retry-After`` above).
        max_automask_points: Most point prompts one segment-everything request
            may decode, over all its crops (413 above).
        header_timeout_s: A request's line and headers must arrive within this
            many seconds of its first byte (or of the connection); else 408.
        body_timeout_s: A request's body must arrive within this many seconds
            after its headers; else 408.
        idle_timeout_s: A kept-alive connection with no request is closed
            after this many seconds.
        max_connections: Most open HTTP connections; more wait in the
            listen backlog.
        decode_budget_mb: Most MiB of image decoding in flight at once,
            server-wide (about 4 bytes per pixel each); further uploads wait.
        answer_budget_mb: Most MiB of mask answers being built at once,
            server-wide (2 bytes per mask pixel: the mask and its encoding's
            working copy); further requests wait.
    """

    model: Any = "demo"
    extra_models: tuple[Any, ...] = ()
    device: str = "auto"
    dtype: str = "float32"
    host: str = "127.0.0.1"
    port: int = 9090
    token: str | None = None
    cache_mb: int = 1024
    image_store_mb: int = 512
    logits_store_mb: int = 256
    automask_store_mb: int = 128
    cache_dtype: str = "auto"
    max_pixels: int = 50_000_000
    max_body_mb: int = 100
    max_batch: int = 0
    batch_wait_ms: float = 3.0
    threads: int = 16
    log_level: str = "INFO"
    plugins: bool = True
    clip_model: str = "ViT-B/32"
    clip_root: str | None = None
    timeout_s: float = 60.0
    bulk_timeout_s: float = 600.0
    max_queue: int = 256
    max_bulk_jobs: int = 4
    max_automask_points: int = 8192
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 15.0
    max_connections: int = 1000
    decode_budget_mb: int = 512
    answer_budget_mb: int = 1024

    @property
    def models(self) -> tuple[Any, ...]:
        """Every model to serve, the default (:attr:`model`) first."""
        return (self.model, *self.extra_models)
