"""GpuWorker: grouping by signature, batch limits, deferred calls, error delivery."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from backend.api.errors import ServiceUnavailable
from backend.serving.gpu_worker import GpuWorker, is_out_of_memory


@dataclass
class Job:
    signature: str
    batch_size: int = 1
    value: int = 0


class Recorder:
    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.groups: list[list[int]] = []
        self.fail_with = fail_with

    def __call__(self, jobs: list[Job]) -> list[int]:
        self.groups.append([j.value for j in jobs])
        if self.fail_with is not None:
            raise self.fail_with
        return [j.value * 10 for j in jobs]


def _held(worker: GpuWorker) -> threading.Event:
    release, started = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait(10)))
    assert started.wait(5)
    return release


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _worker(recorder: Recorder, **kwargs) -> GpuWorker:
    worker = GpuWorker(run_decode_group=recorder, batch_wait_s=0.0, **kwargs)
    worker.start()
    return worker


def test_queued_jobs_are_grouped_by_signature(recorder):
    worker = _worker(recorder, max_batch=8)
    release = _held(worker)
    futures = [worker.submit_decode(Job(sig, value=i)) for i, sig in enumerate("ababa")]
    release.set()
    assert [f.result(5) for f in futures] == [0, 10, 20, 30, 40]
    assert sorted(recorder.groups) == [[0, 2, 4], [1, 3]]
    assert worker.decoder_calls == 2
    worker.stop()


def test_groups_are_split_at_max_batch_prompts(recorder):
    worker = _worker(recorder, max_batch=4)
    release = _held(worker)
    futures = [worker.submit_decode(Job("a", batch_size=2, value=i)) for i in range(5)]
    release.set()
    [f.result(5) for f in futures]
    assert recorder.groups == [[0, 1], [2, 3], [4]]
    worker.stop()


def test_calls_queued_behind_decodes_still_run(recorder):
    worker = _worker(recorder, max_batch=8)
    release = _held(worker)
    first = worker.submit_decode(Job("a", value=1))
    call = worker.submit(lambda: "encoded")
    second = worker.submit_decode(Job("a", value=2))
    release.set()
    assert call.result(5) == "encoded" and first.result(5) == 10 and second.result(5) == 20
    worker.stop()


def test_group_failure_reaches_every_caller_of_the_group_only():
    calls = {"n": 0}

    def run(jobs):
        calls["n"] += 1
        if jobs[0].signature == "bad":
            raise ValueError("boom")
        return [0 for _ in jobs]

    worker = GpuWorker(run_decode_group=run, batch_wait_s=0.0)
    worker.start()
    release = _held(worker)
    bad = [worker.submit_decode(Job("bad")) for _ in range(2)]
    good = worker.submit_decode(Job("good"))
    release.set()
    for future in bad:
        with pytest.raises(ValueError, match="boom"):
            future.result(5)
    assert good.result(5) == 0
    worker.stop()


def test_out_of_memory_becomes_service_unavailable():
    worker = GpuWorker(run_decode_group=Recorder(RuntimeError("CUDA out of memory. Tried to allocate")))
    worker.start()
    with pytest.raises(ServiceUnavailable, match="GPU memory"):
        worker.submit_decode(Job("a")).result(5)
    with pytest.raises(ServiceUnavailable):
        worker.submit(lambda: (_ for _ in ()).throw(RuntimeError("out of memory"))).result(5)
    worker.stop()


def test_is_out_of_memory_only_for_memory_errors():
    assert is_out_of_memory(RuntimeError("CUDA out of memory."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_waits_for_announced_requests_then_stops_waiting(recorder):
    expected = {"n": 2}
    worker = GpuWorker(run_decode_group=recorder, batch_wait_s=2.0, expected_decodes=lambda: expected["n"])
    worker.start()
    first = worker.submit_decode(Job("a", value=1))
    threading.Event().wait(0.05)
    second = worker.submit_decode(Job("a", value=2))
    assert (first.result(5), second.result(5)) == (10, 20)
    assert recorder.groups == [[1, 2]]
    expected["n"] = 1
    lone = worker.submit_decode(Job("a", value=3))
    assert lone.result(1.0) == 30  # no 2-second wait when nobody else is coming
    worker.stop()
