"""The single thread that owns every forward pass of the model.

HTTP threads never touch the GPU: they put work on :class:`GpuWorker`'s
queues (:mod:`backend.serving.work_queue`) and wait on a
:class:`~concurrent.futures.Future`. Three kinds of work exist, served in
this order:

* decode jobs (prompt -> masks) are micro-batched: the worker takes what is
  queued, waits a few milliseconds for more while other requests are still
  on their way, groups jobs whose ``signature`` is equal and hands each
  group to one batched decoder call;
* interactive calls (image encoder, model loading) run one at a time, one
  after each round of decodes;
* bulk calls (segment-everything, text ranking, bulk encodings) run when
  nothing interactive waits. They call :meth:`GpuWorker.checkpoint` between
  slices of their work; the checkpoint runs the interactive work that came
  in meanwhile, lets the CPU to interactive requests still being answered
  (up to :data:`BULK_YIELD_S`), and stops the bulk call (by raising) when
  its ticket was cancelled or its deadline passed.

Every job may carry a :class:`~backend.serving.scheduling.Ticket`; a job
whose ticket expired or was cancelled before it started is dropped.
Out-of-memory errors become :class:`~backend.api.errors.ServiceUnavailable` (503)
for the requests of that batch only; the worker frees the allocator cache
and keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from backend.api.errors import ServiceUnavailable
from backend.api.priority import Priority
from backend.serving.scheduling import Ticket
from backend.serving.work_queue import WorkItem, WorkQueue

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 256
"""Most decodes plus interactive calls waiting (``--max-queue``)."""
DEFAULT_MAX_BULK_JOBS = 4
"""Most bulk jobs waiting or running (``--max-bulk-jobs``)."""
BULK_YIELD_S = 0.05
"""Longest pause, in seconds, of a bulk call at a checkpoint while interactive
requests are being answered (their masks encoded, their JSON written): the
worker's threads and the interpreter lock are theirs meanwhile. Under
unbroken interactive load bulk work still advances one slice per pause."""
_YIELD_POLL_S = 0.002


class Batchable(Protocol):
    """What the worker needs to know about a decode job to batch it."""

    @property
    def signature(self) -> Hashable:
        """Jobs with equal signatures can share one decoder call."""

    @property
    def batch_size(self) -> int:
        """Number of prompts (objects) in the job."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and allocator "out of memory" errors."""
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class GpuWorker:
    """Serializes model work on one thread: decodes first (micro-batched), bulk work in slices."""

    def __init__(
        self,
        *,
        run_decode_group: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 16,
        batch_wait_s: float = 0.003,
        expected_decodes: Callable[[], int] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_bulk_jobs: int = DEFAULT_MAX_BULK_JOBS,
        interactive_in_flight: Callable[[], int] | None = None,
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
            max_queue: Most decodes plus interactive calls waiting; more are
                refused with :class:`~backend.serving.scheduling.QueueFull`.
            max_bulk_jobs: Most bulk calls waiting or running; more are refused alike.
            interactive_in_flight: Number of interactive requests being
                handled (from arrival to their answer's encoding); bulk calls
                pause at checkpoints while it is above 0 (see :data:`BULK_YIELD_S`).
            name: Thread name.
        """
        self._run_decode_group = run_decode_group
        self.max_batch = max_batch
        self._batch_wait_s = max(batch_wait_s, 0.0)
        self._expected_decodes = expected_decodes
        self._interactive_in_flight = interactive_in_flight or (lambda: 0)
        self._queue = WorkQueue(max_interactive=max_queue, max_bulk=max_bulk_jobs)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._bulk_item: WorkItem | None = None
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
        self._queue.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def queue_depth(self) -> int:
        """Work items waiting (not counting the one running)."""
        return len(self._queue)

    @property
    def queue_bounds(self) -> tuple[int, int]:
        """``(most interactive items waiting, most bulk jobs waiting or running)``."""
        return self._queue.max_interactive, self._queue.max_bulk

    def bulk_jobs(self) -> int:
        """Bulk calls waiting or running."""
        return self._queue.bulk_jobs()

    def submit(
        self,
        fn: Callable[[], Any],
        *,
        priority: Priority = Priority.INTERACTIVE,
        ticket: Ticket | None = None,
        bounded: bool = True,
    ) -> Future:
        """Queue an exclusive call (encoder, segment-everything...).

        Args:
            fn: Runs on the worker thread; a bulk ``fn`` should call
                :meth:`checkpoint` between slices of its work.
            priority: Its lane.
            ticket: Deadline and cancellation (None: no limit).
            bounded: Refuse it when its lane is full (False for internal work).

        Raises:
            QueueFull: The lane is full.
        """
        return self._queue.put(WorkItem(priority, ticket, fn=fn), bounded=bounded)

    def submit_decode(self, job: Batchable, *, ticket: Ticket | None = None) -> Future:
        """Queue a decode job; it may share a decoder call with others.

        Raises:
            QueueFull: The interactive lanes are full.
        """
        return self._queue.put(WorkItem(Priority.INTERACTIVE, ticket, job=job))

    def promote(self, future: Future) -> bool:
        """Let a queued bulk call run as interactive work (a person now waits for it)."""
        return self._queue.promote(future)

    def checkpoint(self) -> None:
        """Between two slices of a bulk call: run waiting interactive work, then go on or stop.

        Must be called on the worker thread, from inside a bulk call.

        Raises:
            DeadlineExceeded: The bulk call's deadline has passed.
            ClientGone: Its client disconnected.
        """
        if threading.current_thread() is not self._thread:
            raise RuntimeError("GpuWorker.checkpoint() runs on the worker thread, inside a bulk call")
        self._check_bulk_ticket()
        self._run_urgent()
        pause_until = time.monotonic() + BULK_YIELD_S
        while self._interactive_in_flight() > 0 and time.monotonic() < pause_until:
            self._queue.wait_for_urgent(_YIELD_POLL_S)
            self._run_urgent()
        self._check_bulk_ticket()

    def _run_urgent(self) -> None:
        while (item := self._queue.take_urgent()) is not None:
            self._run(item)

    def _check_bulk_ticket(self) -> None:
        item = self._bulk_item
        if item is not None and item.ticket is not None:
            item.ticket.check()

    def _loop(self) -> None:
        while True:
            item = self._queue.take()
            if item is None:
                return
            if item.priority is Priority.BULK and item.job is None:
                self._run_bulk(item)
            else:
                self._run(item)
            # a finished item (and the answer its future holds) must not live while the next is awaited
            del item

    def _run(self, item: WorkItem) -> None:
        """An interactive item: a round of decodes starting with it, or one call."""
        if item.job is not None:
            self._run_decodes(self._collect(item))
        else:
            self._run_call(item)

    def _run_bulk(self, item: WorkItem) -> None:
        start = time.monotonic()
        self._bulk_item = item
        ran = False
        try:
            ran = self._run_call(item)
        finally:
            self._bulk_item = None
            self._queue.bulk_finished(time.monotonic() - start if ran else None)

    def _collect(self, first: WorkItem) -> list[WorkItem]:
        """Gather decode jobs for one round (other work stays queued)."""
        batch = [first]
        size = first.job.batch_size
        deadline = time.monotonic() + self._batch_wait_s
        while size < self.max_batch:
            item = self._queue.take_decode()
            if item is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more_expected(len(batch)):
                    break
                item = self._queue.take_decode(timeout=min(remaining, 0.0005))
                if item is None:
                    continue
            batch.append(item)
            size += item.job.batch_size
        return batch

    def _more_expected(self, collected: int) -> bool:
        if self._expected_decodes is None:
            return True
        return self._expected_decodes() > collected

    def _run_call(self, item: WorkItem) -> bool:
        """Run one call; False when it was dropped before starting."""
        if item.dropped() or not item.future.set_running_or_notify_cancel():
            return False
        assert item.fn is not None
        try:
            item.future.set_result(item.fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            item.future.set_exception(self._translate(exc))
        return True

    def _run_decodes(self, batch: list[WorkItem]) -> None:
        groups: dict[Hashable, list[WorkItem]] = {}
        for item in batch:
            if not item.dropped() and item.future.set_running_or_notify_cancel():
                groups.setdefault(item.job.signature, []).append(item)
        for items in groups.values():
            for chunk in self._chunks(items):
                self._run_group(chunk)

    def _chunks(self, items: list[WorkItem]) -> list[list[WorkItem]]:
        chunks: list[list[WorkItem]] = [[]]
        size = 0
        for item in items:
            if chunks[-1] and size + item.job.batch_size > self.max_batch:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += item.job.batch_size
        return chunks

    def _run_group(self, items: list[WorkItem]) -> None:
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
