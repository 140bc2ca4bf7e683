"""The model thread's queues: decodes, interactive calls and bulk jobs, bounded.

Three lanes, each first in, first out:

* decodes (prompt -> masks), micro-batched by the worker;
* interactive calls (image encodings a person waits for, model loading);
* bulk jobs (segment-everything, text ranking, ``priority=bulk`` encodings).

:meth:`WorkQueue.take` serves decodes first and interactive calls next, one
call after each round of decodes so that a stream of clicks cannot hold an
upload back; bulk jobs only when both are empty. Interactive lanes together
hold at most ``max_interactive`` items; bulk jobs queued plus the one running
at most ``max_bulk``. A full lane refuses new work with :class:`QueueFull`,
whose ``retry_after_s`` is one second for interactive work and the typical
duration of a bulk job for bulk work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from backend.api.errors import ServiceUnavailable
from backend.api.priority import Priority
from backend.serving.scheduling import QueueFull, Ticket, retry_after

BULK_DURATION_GUESS_S = 5.0
"""Retry-After for a full bulk queue before any bulk job has finished, in seconds."""
_EWMA_WEIGHT = 0.3


@dataclass(eq=False)
class WorkItem:
    """One queued job.

    Attributes:
        priority: Its lane (decodes are always interactive).
        ticket: Deadline and cancellation, or None (no limit).
        fn: The call to run (None for a decode).
        job: The decode job (None for a call).
        future: Where the result goes.
    """

    priority: Priority
    ticket: Ticket | None = None
    fn: Callable[[], Any] | None = None
    job: Any = None
    future: Future = field(default_factory=Future)

    def dropped(self) -> bool:
        """True when the job must not start: cancelled by its caller, cancelled or past its deadline.

        Delivers the ticket's error to the future when that is why.
        """
        if self.future.done():
            return True
        error = self.ticket.error() if self.ticket is not None else None
        if error is None:
            return False
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(error)
        return True


class WorkQueue:
    """Bounded priority lanes shared by the HTTP threads and the model thread.

    Args:
        max_interactive: Most decodes plus interactive calls waiting.
        max_bulk: Most bulk jobs waiting or running.
    """

    def __init__(self, *, max_interactive: int, max_bulk: int) -> None:
        if max_interactive < 1 or max_bulk < 1:
            raise ValueError("queue bounds must be >= 1")
        self.max_interactive = max_interactive
        self.max_bulk = max_bulk
        self._decodes: deque[WorkItem] = deque()
        self._calls: deque[WorkItem] = deque()
        self._bulk: deque[WorkItem] = deque()
        self._bulk_running = 0
        self._bulk_seconds: float | None = None
        self._call_turn = False
        self._closed = False
        self._ready = threading.Condition()

    # ------------------------------------------------------------ producers
    def put(self, item: WorkItem, *, bounded: bool = True) -> Future:
        """Queue ``item``; returns its future.

        Args:
            item: The job.
            bounded: Refuse it when its lane is full (internal jobs pass False).

        Raises:
            QueueFull: The lane is full.
            ServiceUnavailable: The queue was closed (server stopping).
        """
        with self._ready:
            if self._closed:
                raise ServiceUnavailable("the model server is stopping; retry on another server")
            if bounded:
                self._admit(item)
            lane = self._lane(item)
            lane.append(item)
            self._ready.notify()
        return item.future

    def _lane(self, item: WorkItem) -> deque[WorkItem]:
        if item.job is not None:
            return self._decodes
        return self._bulk if item.priority is Priority.BULK else self._calls

    def _admit(self, item: WorkItem) -> None:
        if item.priority is Priority.BULK and item.job is None:
            _purge(self._bulk)
            if len(self._bulk) + self._bulk_running >= self.max_bulk:
                raise QueueFull(
                    f"the server already has {self.max_bulk} bulk jobs (segment-everything, text prompts, "
                    "bulk uploads) queued or running, its limit (--max-bulk-jobs); retry later",
                    retry_after_s=retry_after(self._bulk_seconds or BULK_DURATION_GUESS_S),
                )
            return
        if len(self._decodes) + len(self._calls) >= self.max_interactive:
            _purge(self._decodes)
            _purge(self._calls)
            if len(self._decodes) + len(self._calls) >= self.max_interactive:
                raise QueueFull(
                    f"the model queue is full ({self.max_interactive} requests waiting, --max-queue); "
                    "retry in a second",
                    retry_after_s=1,
                )

    def promote(self, future: Future) -> bool:
        """Move a queued bulk call to the interactive lane (a person now waits for it).

        Returns:
            True if it was found waiting.
        """
        with self._ready:
            for item in self._bulk:
                if item.future is future:
                    self._bulk.remove(item)
                    item.priority = Priority.INTERACTIVE
                    self._calls.append(item)
                    self._ready.notify()
                    return True
        return False

    def close(self) -> None:
        """Accept no more work; :meth:`take` returns None once the lanes are empty."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    # ------------------------------------------------------------ consumer
    def take(self) -> WorkItem | None:
        """The next job by priority, waiting for one; None when closed and empty."""
        with self._ready:
            while True:
                item = self._pop_urgent()
                if item is None and self._bulk:
                    item = self._bulk.popleft()
                    self._bulk_running += 1
                if item is not None:
                    return item
                if self._closed:
                    return None
                self._ready.wait()

    def take_urgent(self) -> WorkItem | None:
        """A decode or interactive call if one waits (never blocks); for checkpoints between slices."""
        with self._ready:
            return self._pop_urgent()

    def wait_for_urgent(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a decode or interactive call to be queued."""
        with self._ready:
            if not self._decodes and not self._calls:
                self._ready.wait(timeout)

    def take_decode(self, timeout: float = 0.0) -> WorkItem | None:
        """The next decode, waiting up to ``timeout`` seconds for one."""
        with self._ready:
            if not self._decodes and timeout > 0:
                self._ready.wait(timeout)
            return self._decodes.popleft() if self._decodes else None

    def _pop_urgent(self) -> WorkItem | None:
        if self._calls and (self._call_turn or not self._decodes):
            self._call_turn = False
            return self._calls.popleft()
        if self._decodes:
            self._call_turn = True
            return self._decodes.popleft()
        return None

    def bulk_finished(self, seconds: float | None) -> None:
        """A bulk job taken by :meth:`take` has ended (``seconds`` it ran, None if it never started)."""
        with self._ready:
            self._bulk_running -= 1
            if seconds is not None:
                previous = self._bulk_seconds
                self._bulk_seconds = (
                    seconds if previous is None else previous + _EWMA_WEIGHT * (seconds - previous)
                )

    # ------------------------------------------------------------ status
    def __len__(self) -> int:
        """Jobs waiting in every lane (not counting the running one)."""
        with self._ready:
            return len(self._decodes) + len(self._calls) + len(self._bulk)

    def bulk_jobs(self) -> int:
        """Bulk jobs waiting or running."""
        with self._ready:
            return len(self._bulk) + self._bulk_running


def _purge(lane: deque[WorkItem]) -> None:
    """Drop jobs that must not start any more (their callers gave up or their deadlines passed)."""
    dead = [item for item in lane if item.dropped()]
    for item in dead:
        lane.remove(item)
