"""Finding 1: slow or idle connections must not stall the server (real ``sam-server`` on 127.0.0.1).

128 sockets that trickle header lines, trickle a body or send nothing sit
next to a client measuring ``/health`` and ``/v1/predict``, in windows that
alternate with windows without them (so both see the same load of a shared
machine): the p99 stays within the bound measured without them, and nothing
fails. With short deadlines the slow sockets get ``408`` and are closed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.reliability.slow_clients import SlowClients
from tests.serving.server_process import ServerProcess
from tests.serving.tiny_model import picture, png_bytes

pytestmark = pytest.mark.slow
WINDOWS = 3
CALLS_PER_WINDOW = 60
TIMEOUT_S = 10.0
SLACK_MS = 50.0
"""Added to 3x the quiet p99: this two-core machine is shared with other work."""


@pytest.fixture(scope="module")
def patient_server(tiny_checkpoint) -> Iterator[ServerProcess]:
    """Deadlines longer than the test: every slow socket stays open while it measures."""
    server = ServerProcess(
        "--model",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--no-plugins",
        "--header-timeout",
        "60",
        "--idle-timeout",
        "60",
    )
    server.start(timeout=120)
    yield server
    server.stop()


def _calls(url: str, image_id: str, samples: list[float], errors: list[str]) -> None:
    """:data:`CALLS_PER_WINDOW` alternating ``/health`` and ``/v1/predict`` calls: latencies and failures."""
    session = requests.Session()
    for i in range(CALLS_PER_WINDOW // 2):
        body = {"image_id": image_id, "points": [[20 + i % 9, 15]], "labels": [1]}
        for call in (
            lambda: session.get(f"{url}/health", timeout=TIMEOUT_S),
            lambda b=body: session.post(f"{url}/v1/predict", json=b, timeout=TIMEOUT_S),
        ):
            start = time.perf_counter()
            try:
                status = call().status_code
            except requests.RequestException as exc:
                errors.append(type(exc).__name__)
                continue
            samples.append((time.perf_counter() - start) * 1000.0)
            if status != 200:
                errors.append(str(status))


def test_128_slow_or_idle_sockets_leave_health_and_predictions_within_the_quiet_p99_bound(patient_server):
    url = patient_server.url
    image_id = requests.post(f"{url}/v1/images", data=png_bytes(picture()), timeout=60).json()["image_id"]
    quiet: list[float] = []
    hostile: list[float] = []
    errors: list[str] = []
    closed: dict[str, int] = {}
    for _ in range(WINDOWS):  # alternating windows: both see the same load of this shared machine
        _calls(url, image_id, quiet, errors)
        with SlowClients(patient_server.port, count=128, interval_s=0.5, duration_s=60) as slow:
            time.sleep(1.0)  # every kind has started its trickle
            _calls(url, image_id, hostile, errors)
            for kind in ("headers", "body", "idle"):
                closed[kind] = closed.get(kind, 0) + slow.closed(kind)
    quiet_p99, hostile_p99 = float(np.percentile(quiet, 99)), float(np.percentile(hostile, 99))
    print(f"p99 quiet {quiet_p99:.1f} ms, next to 128 slow sockets {hostile_p99:.1f} ms")
    assert errors == []
    assert sum(closed.values()) == 0, f"slow sockets closed before the measurement ended: {closed}"
    assert hostile_p99 <= 3 * quiet_p99 + SLACK_MS


def _server_with_deadlines(checkpoint: Path, *, header: int, body: int, idle: int) -> ServerProcess:
    """A started ``sam-server`` with these ``--header-timeout``, ``--body-timeout`` and ``--idle-timeout``."""
    server = ServerProcess(
        *("--model", str(checkpoint), "--device", "cpu", "--no-plugins"),
        *("--header-timeout", str(header), "--body-timeout", str(body), "--idle-timeout", str(idle)),
    )
    server.start(timeout=120)
    return server


def test_slow_requests_get_408_at_their_deadline_and_idle_sockets_are_closed(tiny_checkpoint):
    server = _server_with_deadlines(tiny_checkpoint, header=2, body=3, idle=3)
    try:
        with SlowClients(server.port, count=12, interval_s=0.5, duration_s=15) as slow:
            deadline = time.monotonic() + 10.0  # 3 s body deadline + 1 s checks + a busy machine
            while slow.closed() < 12 and time.monotonic() < deadline:
                time.sleep(0.25)
            closed = {kind: slow.closed(kind) for kind in ("headers", "body", "idle")}
            answers = [s.answer for s in slow.sockets if s.kind in ("headers", "body")]
        assert closed == {"headers": 4, "body": 4, "idle": 4}, closed
        for answer in answers:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:200]
            assert json.loads(body)["error"] == "request_timeout"
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        server.stop()


def test_a_request_stalled_longer_than_the_idle_timeout_gets_its_408_at_its_own_deadline(tiny_checkpoint):
    """Header and body deadlines above ``--idle-timeout`` hold: a request that stops
    half-way is answered ``408`` at its deadline, not dropped silently at the idle timeout."""
    server = _server_with_deadlines(tiny_checkpoint, header=4, body=4, idle=1)
    halves = {
        "headers": b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl",
        "body": b'POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{"image_id": ',
    }
    try:
        sockets = {kind: socket.create_connection(("127.0.0.1", server.port), timeout=15) for kind in halves}
        start = time.monotonic()
        for kind, sock in sockets.items():
            sock.sendall(halves[kind])
        for kind, sock in sockets.items():
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            waited = time.monotonic() - start
            sock.close()
            assert answer.startswith(b"HTTP/1.1 408"), (kind, waited, answer[:200])
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "request_timeout"
            assert waited > 3.5, (kind, waited)  # the 4 s deadline, not the 1 s idle timeout
    finally:
        server.stop()
