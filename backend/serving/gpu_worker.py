"""The single thread that owns every forward pass of the model.

HTTP threads never touch the GPU: they put work on :class:`GpuWorker`'s queue
and wait on a :class:`~concurrent.futures.Future`. Two kinds of work exist:

* calls (image encoder, segment-everything, text ranking) run one at a time
  in arrival order;
* decode jobs (prompt -> masks) are micro-batched: the worker takes what is
  queued, waits a few milliseconds for more while other requests are still
  on their way, groups jobs whose ``signature`` is equal and hands each
  group to one batched decoder call.

Out-of-memory errors become :class:`~backend.errors.ServiceUnavailable` (503)
for the requests of that batch only; the worker frees the allocator cache
and keeps serving.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class DecodeJob(Protocol):
    """What the worker needs to know about a decode job to batch it."""

    @property
    def signature(self) -> Hashable:
        """Jobs with equal signatures can share one decoder call."""

    @property
    def batch_size(self) -> int:
        """Number of prompts (objects) in the job."""


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


@dataclass
class _Decode:
    job: DecodeJob
    future: Future = field(default_factory=Future)


_STOP = object()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and allocator "out of memory" errors."""
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class GpuWorker:
    """Serializes model work on one thread, micro-batching decoder calls."""

    def __init__(
        self,
        *,
        run_decode_group: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 16,
        batch_wait_s: float = 0.003,
        expected_decodes: Callable[[], int] | None = None,
        name: str = "sam-gpu-worker",
    ) -> None:
        """Create a stopped worker; call :meth:`start`.

        Args:
            run_decode_group: Runs jobs of equal signature in one decoder call
                and returns one result per job, in order.
            max_batch: Most prompts per decoder call; 1 turns batching off.
            batch_wait_s: Longest wait, in seconds, for more decode jobs once
                one is taken from the queue.
            expected_decodes: Number of decode requests currently being
                handled by callers (queued or still being validated); the
                worker stops waiting as soon as all of them are in the batch.
            name: Thread name.
        """
        self._run_decode_group = run_decode_group
        self.max_batch = max_batch
        self._batch_wait_s = max(batch_wait_s, 0.0)
        self._expected_decodes = expected_decodes
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.decoder_calls = 0

    @property
    def max_batch(self) -> int:
        """Most prompts per decoder call (1: no micro-batching)."""
        return self._max_batch_value

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_batch must be >= 1")
        self._max_batch_value = value

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish queued work, then stop the thread (waits up to ``timeout`` s)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def queue_depth(self) -> int:
        """Work items waiting (not counting the one running)."""
        return self._queue.qsize()

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue an exclusive call (encoder, segment-everything...)."""
        item = _Call(fn)
        self._queue.put(item)
        return item.future

    def submit_decode(self, job: DecodeJob) -> Future:
        """Queue a decode job; it may share a decoder call with others."""
        item = _Decode(job)
        self._queue.put(item)
        return item.future

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            batch, deferred = self._collect(item)
            self._run_decodes(batch)
            for other in deferred:
                if other is _STOP:
                    return
                self._run_call(other)

    def _collect(self, first: _Decode) -> tuple[list[_Decode], list[Any]]:
        """Gather decode jobs for one round; other work is deferred, not lost."""
        batch, deferred = [first], []
        size = first.job.batch_size
        deadline = time.monotonic() + self._batch_wait_s
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more_expected(len(batch)):
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.0005))
                except queue.Empty:
                    continue
            if isinstance(item, _Decode):
                batch.append(item)
                size += item.job.batch_size
            else:
                deferred.append(item)
                if item is _STOP:
                    break
        return batch, deferred

    def _more_expected(self, collected: int) -> bool:
        if self._expected_decodes is None:
            return True
        return self._expected_decodes() > collected

    def _run_call(self, item: _Call) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            item.future.set_exception(self._translate(exc))

    def _run_decodes(self, batch: list[_Decode]) -> None:
        groups: dict[Hashable, list[_Decode]] = {}
        for item in batch:
            if item.future.set_running_or_notify_cancel():
                groups.setdefault(item.job.signature, []).append(item)
        for items in groups.values():
            for chunk in self._chunks(items):
                self._run_group(chunk)

    def _chunks(self, items: list[_Decode]) -> list[list[_Decode]]:
        chunks: list[list[_Decode]] = [[]]
        size = 0
        for item in items:
            if chunks[-1] and size + item.job.batch_size > self.max_batch:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += item.job.batch_size
        return chunks

    def _run_group(self, items: list[_Decode]) -> None:
        try:
            results = self._run_decode_group([item.job for item in items])
            self.decoder_calls += 1
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers
            error = self._translate(exc)
            for item in items:
                item.future.set_exception(error)
            return
        for item, result in zip(items, results, strict=True):
            item.future.set_result(result)

    @staticmethod
    def _translate(exc: BaseException) -> BaseException:
        if is_out_of_memory(exc):
            log.warning("out of accelerator memory: %s", exc)
            _free_accelerator_memory()
            return ServiceUnavailable(
                "The model server ran out of GPU memory for this request; retry, "
                "or send fewer boxes per request or a smaller image."
            )
        return exc
