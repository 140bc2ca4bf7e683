"""Priorities, deadlines and cancellation of the model thread's jobs.

Every job the service puts on the :class:`~backend.serving.gpu_worker.GpuWorker`
carries a :class:`Ticket`: its priority, its deadline and a way to learn that
its client is gone. Interactive work (prompt decodes, image uploads) runs
before bulk work (segment-everything, text candidates, embeddings asked for
with ``priority=bulk``). Bulk work runs in slices; between slices the worker
runs the interactive work that arrived and checks the ticket, so a job whose
deadline passed or whose client left stops at the next slice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from backend.api.errors import SamError, ServiceUnavailable
from backend.api.priority import Priority

T = TypeVar("T")

POLL_S = 0.1
"""How often, in seconds, a waiting request checks its deadline and its client."""


class QueueFull(ServiceUnavailable):
    """The model thread's queue for this kind of work is full (503 with ``Retry-After``).

    Attributes:
        retry_after_s: Whole seconds after which a retry is likely to be accepted.
    """

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class DeadlineExceeded(SamError):
    """A job did not finish within the server's time limit for its kind (504)."""

    code = "deadline_exceeded"
    status = 504


class ClientGone(ServiceUnavailable):
    """The client closed its connection; the job was cancelled (nobody reads this answer)."""

    code = "cancelled"


@dataclass(eq=False)
class Ticket:
    """Priority, deadline and cancellation of one request's jobs.

    Attributes:
        priority: Queue of the jobs.
        deadline: ``time.monotonic()`` value after which the jobs are dropped.
        timeout_s: The limit the deadline came from, in seconds (for messages).
        abandoned: Returns True once the client has disconnected; None when
            the caller cannot tell (in-process clients).
    """

    priority: Priority
    deadline: float
    timeout_s: float
    abandoned: Callable[[], bool] | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def start(
        cls, priority: Priority, timeout_s: float, abandoned: Callable[[], bool] | None = None
    ) -> Ticket:
        """A ticket whose deadline is ``timeout_s`` seconds from now."""
        return cls(priority, time.monotonic() + timeout_s, timeout_s, abandoned)

    def detached(self, priority: Priority | None = None) -> Ticket:
        """The same deadline for a job shared by several requests: no client probe, own cancel flag."""
        return Ticket(priority or self.priority, self.deadline, self.timeout_s)

    def cancel(self) -> None:
        """Stop the jobs at their next slice (or before they start)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """True after :meth:`cancel`."""
        return self._cancelled.is_set()

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.deadline

    def error(self) -> SamError | None:
        """Why the jobs must stop (cancelled or past the deadline), or None."""
        if self.cancelled:
            return ClientGone("the client disconnected; its job was cancelled")
        if self.expired():
            return self._deadline_error()
        return None

    def _deadline_error(self) -> DeadlineExceeded:
        what = "bulk work" if self.priority is Priority.BULK else "an interactive request"
        return DeadlineExceeded(
            f"the job did not finish within the server's limit of {self.timeout_s:g} s for {what}; "
            "ask for less work (fewer points_per_side or crop_n_layers, a smaller image) or retry later"
        )

    def check(self) -> None:
        """Raise :meth:`error` if there is one (called between slices, on the worker thread)."""
        error = self.error()
        if error is not None:
            raise error

    def wait(self, future: Future[T], *, cancel_job: bool = True) -> T:
        """The job's result; gives up at the deadline or when the client leaves.

        Args:
            future: The queued job.
            cancel_job: Also cancel the job when giving up (False for a job
                shared with other requests, such as an image encoding).

        Raises:
            DeadlineExceeded: The deadline passed first.
            ClientGone: The client disconnected first.
        """
        while True:
            remaining = self.deadline - time.monotonic()
            try:
                return future.result(timeout=min(POLL_S, max(remaining, 0.0)))
            except TimeoutError:
                pass
            if remaining <= 0:
                if cancel_job:
                    future.cancel()  # a running job stops at its next slice: the worker sees the deadline
                raise self._deadline_error()
            if self._client_left():
                if cancel_job:
                    future.cancel()  # the ticket is cancelled: a running job stops at its next slice
                raise ClientGone("the client disconnected; its job was cancelled")

    def _client_left(self) -> bool:
        if self.abandoned is None:
            return False
        try:
            gone = self.abandoned()
        except Exception:  # noqa: BLE001 - a failing probe means we cannot tell
            return False
        if gone:
            self.cancel()
        return gone


def retry_after(seconds: float) -> int:
    """A ``Retry-After`` value: ``seconds`` rounded up, between 1 and 60."""
    if not math.isfinite(seconds):
        return 60
    return min(60, max(1, math.ceil(seconds)))
