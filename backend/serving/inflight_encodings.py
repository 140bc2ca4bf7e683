"""One image encoding per picture, however many requests ask for it at once.

The first request for a picture that is not cached queues its encoding on
the model thread; later requests for the same picture wait on the same
future. The encoding is shared, so a request that gives up (deadline, client
gone) leaves it running; it is cached when it finishes, whoever still
waits. An interactive request for a picture whose encoding waits in the bulk
queue moves it to the interactive queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from functools import partial

from backend.api.priority import Priority
from backend.byte_lru import ByteBoundedLRU
from backend.inference.engine import EncodedImage
from backend.serving.gpu_worker import GpuWorker
from backend.serving.scheduling import Ticket

log = logging.getLogger(__name__)
MiB = 1024 * 1024


class InflightEncodings:
    """Cached embeddings, or one queued encoding per key.

    Args:
        cache: Where finished encodings go (key -> entry).
        worker: The model thread.
    """

    def __init__(self, cache: ByteBoundedLRU[EncodedImage], worker: GpuWorker) -> None:
        self._cache = cache
        self._worker = worker
        self._inflight: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self._said_too_large = False

    def get(self, key: Hashable, encode: Callable[[], EncodedImage], ticket: Ticket) -> EncodedImage:
        """The cached entry for ``key``, or the result of ``encode`` run once on the model thread.

        Args:
            key: Model and image identity.
            encode: Runs on the worker and returns the entry.
            ticket: The asking request's priority and deadline.

        Raises:
            QueueFull: The encoding had to be queued and its lane is full.
            DeadlineExceeded, ClientGone: This request gave up waiting.
        """
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                return entry
            future = self._inflight.get(key)
            created = future is None
            if future is None:
                future = self._worker.submit(encode, priority=ticket.priority, ticket=ticket.detached())
                self._inflight[key] = future
            elif ticket.priority is Priority.INTERACTIVE:
                self._worker.promote(future)
        if created:  # outside the lock: a finished future calls back at once
            future.add_done_callback(partial(self._finished, key))
        return ticket.wait(future, cancel_job=False)

    def _finished(self, key: Hashable, future: Future) -> None:
        """Cache a successful encoding, then forget the in-flight future."""
        try:
            if not future.cancelled() and future.exception() is None:
                entry: EncodedImage = future.result()
                if not self._cache.put(key, entry, entry.nbytes) and not self._said_too_large:
                    self._said_too_large = True
                    log.warning(
                        "an encoded image of %.1f MiB is larger than the embedding cache (--cache-mb %d): "
                        "it is not kept, so every prompt on it encodes the image again; raise --cache-mb",
                        entry.nbytes / MiB,
                        self._cache.stats().capacity_bytes // MiB,
                    )
        finally:
            with self._lock:
                if self._inflight.get(key) is future:
                    del self._inflight[key]
