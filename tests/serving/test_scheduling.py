"""Fair scheduling on the model thread: priorities, slices, deadlines, cancellation, bounded queues."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest

from backend.api.errors import InvalidInput
from backend.api.priority import Priority, parse_priority
from backend.serving.client_probe import disconnect_probe, socket_closed
from backend.serving.gpu_worker import GpuWorker
from backend.serving.scheduling import ClientGone, DeadlineExceeded, QueueFull, Ticket, retry_after


@dataclass
class Job:
    signature: str = "a"
    batch_size: int = 1
    value: int = 0


def _worker(**kwargs) -> GpuWorker:
    log: list[str] = kwargs.pop("log")

    def run(jobs: list[Job]) -> list[int]:
        log.extend(f"decode {j.value}" for j in jobs)
        return [j.value for j in jobs]

    worker = GpuWorker(run_decode_group=run, batch_wait_s=0.0, **kwargs)
    worker.start()
    return worker


def _hold(worker: GpuWorker) -> threading.Event:
    release, started = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(5)
    return release


def _sliced(worker: GpuWorker, log: list[str], slices: int, *, seconds: float = 0.0):
    """A bulk call of ``slices`` slices that calls the worker's checkpoint between them."""

    def bulk() -> str:
        for i in range(slices):
            if i:
                worker.checkpoint()
            log.append(f"slice {i}")
            time.sleep(seconds)
        return "done"

    return bulk


def test_decodes_and_interactive_calls_run_before_queued_bulk_work():
    log: list[str] = []
    worker = _worker(log=log)
    release = _hold(worker)
    bulk = worker.submit(_sliced(worker, log, 2), priority=Priority.BULK)
    decode = worker.submit_decode(Job(value=1))
    call = worker.submit(lambda: log.append("encode"))
    release.set()
    assert bulk.result(5) == "done" and decode.result(5) == 1
    call.result(5)
    assert log == ["decode 1", "encode", "slice 0", "slice 1"]
    worker.stop()


def test_decodes_arriving_during_bulk_work_run_between_its_slices():
    log: list[str] = []
    worker = _worker(log=log)
    started = threading.Event()

    def bulk() -> None:
        for i in range(50):
            worker.checkpoint()
            log.append(f"slice {i}")
            if i == 0:
                started.set()
            time.sleep(0.02)

    future = worker.submit(bulk, priority=Priority.BULK)
    assert started.wait(5)
    begin = time.monotonic()
    assert worker.submit_decode(Job(value=7)).result(5) == 7
    assert time.monotonic() - begin < 0.5  # about one slice, not the 50 (1 s) of the whole job
    future.result(5)
    position = log.index("decode 7")
    assert 0 < position < len(log) - 1  # ran inside the bulk job, between two slices
    worker.stop()


def test_interactive_calls_are_not_starved_by_a_stream_of_decodes():
    log: list[str] = []
    worker = _worker(log=log, max_batch=1)
    release = _hold(worker)
    decodes = [worker.submit_decode(Job(value=i)) for i in range(3)]
    call = worker.submit(lambda: log.append("encode"))
    release.set()
    call.result(5)
    [d.result(5) for d in decodes]
    assert log.index("encode") == 1  # after one round of decodes, not after all of them
    worker.stop()


def test_a_bulk_call_stops_at_the_next_slice_after_its_deadline():
    log: list[str] = []
    worker = _worker(log=log)
    ticket = Ticket.start(Priority.BULK, 0.3)
    future = worker.submit(_sliced(worker, log, 1000, seconds=0.01), priority=Priority.BULK, ticket=ticket)
    with pytest.raises(DeadlineExceeded, match="0.3 s for bulk work"):
        future.result(5)
    assert 0 < len(log) < 100  # stopped about 0.3 s in, not after 10 s
    assert worker.bulk_jobs() == 0
    worker.stop()


def test_a_cancelled_bulk_call_stops_and_a_queued_one_never_starts():
    log: list[str] = []
    worker = _worker(log=log)
    release = _hold(worker)
    running_ticket, queued_ticket = Ticket.start(Priority.BULK, 60), Ticket.start(Priority.BULK, 60)
    running = worker.submit(
        _sliced(worker, log, 1000, seconds=0.01), priority=Priority.BULK, ticket=running_ticket
    )
    queued = worker.submit(lambda: log.append("never"), priority=Priority.BULK, ticket=queued_ticket)
    release.set()
    time.sleep(0.1)
    running_ticket.cancel()
    queued_ticket.cancel()
    with pytest.raises(ClientGone):
        running.result(5)
    with pytest.raises(ClientGone):
        queued.result(5)
    assert "never" not in log and len(log) < 100
    worker.stop()


def test_waiting_gives_up_when_the_client_leaves_and_cancels_the_job():
    log: list[str] = []
    worker = _worker(log=log)
    gone = threading.Event()
    ticket = Ticket.start(Priority.BULK, 60, abandoned=gone.is_set)
    future = worker.submit(_sliced(worker, log, 1000, seconds=0.01), priority=Priority.BULK, ticket=ticket)
    threading.Timer(0.2, gone.set).start()
    begin = time.monotonic()
    with pytest.raises(ClientGone):
        ticket.wait(future)
    assert time.monotonic() - begin < 1.0
    with pytest.raises(ClientGone):
        future.result(5)
    assert len(log) < 100
    worker.stop()


def test_a_decode_past_its_deadline_is_dropped_before_it_runs():
    log: list[str] = []
    worker = _worker(log=log)
    release = _hold(worker)
    late = worker.submit_decode(Job(value=1), ticket=Ticket.start(Priority.INTERACTIVE, 0.05))
    time.sleep(0.1)
    release.set()
    with pytest.raises(DeadlineExceeded, match="interactive request"):
        late.result(5)
    assert log == []
    worker.stop()


def test_full_queues_refuse_work_with_a_retry_after():
    log: list[str] = []
    worker = _worker(log=log, max_queue=2, max_bulk_jobs=1)
    release = _hold(worker)
    worker.submit_decode(Job(value=1))
    worker.submit(lambda: None)
    with pytest.raises(QueueFull, match="--max-queue") as interactive:
        worker.submit_decode(Job(value=2))
    assert interactive.value.status == 503 and interactive.value.retry_after_s == 1
    worker.submit(lambda: None, priority=Priority.BULK)
    with pytest.raises(QueueFull, match="--max-bulk-jobs") as bulk:
        worker.submit(lambda: None, priority=Priority.BULK)
    assert bulk.value.retry_after_s >= 1
    assert worker.submit(lambda: "internal", bounded=False) is not None  # model loading is never refused
    release.set()
    worker.stop()


def test_cancelled_bulk_jobs_free_their_place_in_the_queue():
    log: list[str] = []
    worker = _worker(log=log, max_bulk_jobs=1)
    release = _hold(worker)
    worker.submit(lambda: log.append("never"), priority=Priority.BULK).cancel()  # its caller gave up
    ticket = Ticket.start(Priority.BULK, 60)
    worker.submit(lambda: log.append("never"), priority=Priority.BULK, ticket=ticket)
    ticket.cancel()  # its client disconnected
    third = worker.submit(lambda: "third", priority=Priority.BULK)
    release.set()
    assert third.result(5) == "third" and log == []
    worker.stop()


def test_promote_moves_a_queued_bulk_call_ahead_of_other_bulk_work():
    log: list[str] = []
    worker = _worker(log=log)
    release = _hold(worker)
    first = worker.submit(lambda: log.append("bulk 1"), priority=Priority.BULK)
    second = worker.submit(lambda: log.append("bulk 2"), priority=Priority.BULK)
    assert worker.promote(second)
    release.set()
    first.result(5)
    second.result(5)
    assert log == ["bulk 2", "bulk 1"]
    worker.stop()


def test_checkpoint_only_runs_on_the_worker_thread():
    worker = _worker(log=[])
    with pytest.raises(RuntimeError, match="worker thread"):
        worker.checkpoint()
    worker.stop()


def test_priority_parameter():
    assert parse_priority(None) is Priority.INTERACTIVE
    assert parse_priority("BULK") is Priority.BULK
    with pytest.raises(InvalidInput, match="'interactive'.*'bulk'"):
        parse_priority("urgent")


def test_retry_after_is_whole_seconds_between_1_and_60():
    assert [retry_after(s) for s in (0.0, 0.2, 1.5, 600.0, float("inf"))] == [1, 1, 2, 60, 60]


def test_socket_probe_tells_an_idle_client_from_a_gone_one():
    server, client = socket.socketpair()
    try:
        assert not socket_closed(server)
        client.sendall(b"GET / HTTP/1.1\r\n")  # data waiting (a pipelined request) is not a hang-up
        assert not socket_closed(server)
        assert server.recv(100)
        client.close()
        assert socket_closed(server)
    finally:
        server.close()
    assert socket_closed(server)  # closed on our side too


def test_disconnect_probe_reads_the_servers_environ():
    assert disconnect_probe({}) is None
    assert disconnect_probe({"waitress.client_disconnected": lambda: True})() is True
    server, client = socket.socketpair()
    with server, client:
        probe = disconnect_probe({"werkzeug.socket": server})
        assert probe is not None and probe() is False
        client.close()
        assert probe() is True
