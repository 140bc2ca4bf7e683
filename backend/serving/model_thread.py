"""The service's side of the model thread: tickets, request marks, submitting and waiting.

:class:`ModelThread` owns the :class:`~backend.serving.gpu_worker.GpuWorker`
and applies the server's scheduling settings to it: each request gets a
:class:`~backend.serving.scheduling.Ticket` whose deadline comes from
``config.timeout_s`` (interactive) or ``config.bulk_timeout_s`` (bulk); the
worker learns how many predict requests are on their way (so that it waits
for them while micro-batching) and how many interactive requests are being
answered (so that bulk work pauses meanwhile).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backend.api.priority import Priority
from backend.serving.config import ServerConfig
from backend.serving.gpu_worker import GpuWorker
from backend.serving.scheduling import Ticket


class ModelThread:
    """The GPU worker with the configured limits and the counters it schedules by.

    Args:
        config: Batch size and wait, queue bounds and deadlines.
        run_decode_group: Runs decode jobs of one signature in one decoder call.
    """

    def __init__(self, config: ServerConfig, run_decode_group: Callable[[list[Any]], Sequence[Any]]) -> None:
        self._timeouts = {Priority.INTERACTIVE: config.timeout_s, Priority.BULK: config.bulk_timeout_s}
        self._announced_decodes = 0
        self._interactive = 0
        self._lock = threading.Lock()
        self.worker = GpuWorker(
            run_decode_group=run_decode_group,
            max_batch=max(config.max_batch, 1),
            batch_wait_s=config.batch_wait_ms / 1000.0,
            expected_decodes=lambda: self._announced_decodes,
            max_queue=config.max_queue,
            max_bulk_jobs=config.max_bulk_jobs,
            interactive_in_flight=lambda: self._interactive,
        )

    def ticket(self, priority: Priority, abandoned: Callable[[], bool] | None = None) -> Ticket:
        """A new request's ticket, its deadline counted from now."""
        return Ticket.start(priority, self._timeouts[priority], abandoned)

    @contextmanager
    def interactive_request(self) -> Iterator[None]:
        """Mark an interactive request as being answered: bulk work pauses at its checkpoints meanwhile."""
        with self._counted("_interactive"):
            yield

    @contextmanager
    def decode_announced(self) -> Iterator[None]:
        """Announce a predict request to the worker, which waits for it while it gathers a batch."""
        with self._counted("_announced_decodes"):
            yield

    @contextmanager
    def _counted(self, name: str) -> Iterator[None]:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        try:
            yield
        finally:
            with self._lock:
                setattr(self, name, getattr(self, name) - 1)

    def run(self, fn: Callable[[], Any], ticket: Ticket) -> Any:
        """Run ``fn`` on the worker in the ticket's lane and wait for it, within the ticket's deadline.

        Raises:
            QueueFull: The lane is full.
            DeadlineExceeded, ClientGone: The job was given up (and cancelled).
        """
        return ticket.wait(self.worker.submit(fn, priority=ticket.priority, ticket=ticket))

    def decode(self, job: Any, ticket: Ticket) -> Any:
        """Queue a decode job (micro-batched) and wait for its result within the ticket's deadline."""
        return ticket.wait(self.worker.submit_decode(job, ticket=ticket))
