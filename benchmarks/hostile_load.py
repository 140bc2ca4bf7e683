"""Hostile load for ``bench_load.py --hostile``: slow sockets and a flood of segment-everything requests.

Both run against a server on 127.0.0.1 in background threads while the
``with`` block runs, and stop by themselves after ``duration_s``.

* :class:`SlowSockets` keeps ``count`` connections open that trickle their
  header lines, trickle a 1 MB body, or send nothing, one byte per
  connection every ``interval_s``; a connection the server closes is opened
  again, so the pressure holds for the whole run.
* :class:`AutomaskFlood` runs ``clients`` threads that send the largest
  segment-everything request the server allows, again and again, each with
  other parameters so that no cached answer serves it. A client gives up
  after ``patience_s`` (closing its connection, as an impatient script
  would) and ignores ``Retry-After``: after a 503 it waits only ``pause_s``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import requests

KINDS = ("headers", "body", "idle")


def _opening(kind: str, port: int) -> tuple[bytes, bytes]:
    """(bytes sent at once, bytes trickled afterwards) of one kind of slow client."""
    host = f"127.0.0.1:{port}"
    if kind == "headers":
        lines = "".join(f"X-Slow-{i}: {'a' * 100}\r\n" for i in range(40))
        return b"", f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n".encode()
    if kind == "body":
        head = f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        return head.encode(), b"{" + b" " * 999_999
    return b"", b""


@dataclass
class _Slow:
    kind: str
    sock: socket.socket | None = None
    pending: bytes = b""


@dataclass
class SlowSockets:
    """``count`` slow or idle connections to ``127.0.0.1:port``, reopened when the server closes them.

    Args:
        port: The server's port.
        count: Connections, split evenly over :data:`KINDS`.
        interval_s: Seconds between two trickled bytes of one connection.
        duration_s: The feeding thread stops after this long, whatever happens.
    """

    port: int
    count: int = 128
    interval_s: float = 1.0
    duration_s: float = 120.0
    reopened: int = 0
    failed_connects: int = 0
    _slow: list[_Slow] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SlowSockets:
        self._slow = [_Slow(KINDS[i % len(KINDS)]) for i in range(self.count)]
        for slow in self._slow:
            self._open(slow)
        self._thread = threading.Thread(target=self._feed, name="slow-sockets", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for slow in self._slow:
            if slow.sock is not None:
                slow.sock.close()

    def open_now(self) -> int:
        """Connections open at this moment."""
        return sum(1 for slow in self._slow if slow.sock is not None)

    def _open(self, slow: _Slow) -> None:
        first, slow.pending = _opening(slow.kind, self.port)
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            sock.sendall(first)
            sock.setblocking(False)
            slow.sock = sock
        except OSError:
            self.failed_connects += 1
            slow.sock = None

    def _feed(self) -> None:
        deadline = time.monotonic() + self.duration_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            for slow in self._slow:
                if self._stop.is_set():
                    return
                self._poll(slow)
            self._stop.wait(self.interval_s)

    def _poll(self, slow: _Slow) -> None:
        """Drop what the server sent; reopen a closed connection; else trickle one byte."""
        if slow.sock is None:
            self._open(slow)
            return
        try:
            closed = slow.sock.recv(65536) == b""
        except BlockingIOError:
            closed = False
        except OSError:
            closed = True
        if not closed and slow.pending:
            try:
                slow.sock.send(slow.pending[:1])
                slow.pending = slow.pending[1:]
            except BlockingIOError:
                pass
            except OSError:
                closed = True
        if closed:
            slow.sock.close()
            self.reopened += 1
            self._open(slow)


@dataclass
class AutomaskFlood:
    """``clients`` threads sending the largest allowed segment-everything request, over and over.

    Args:
        url: The server's base URL.
        image_id: An uploaded image.
        params: The request's generator parameters (the largest the server allows).
        clients: Flooding threads.
        patience_s: A request is abandoned (connection closed) after this long.
        pause_s: Wait after a refused (503) request; ``Retry-After`` is ignored.
        duration_s: The threads stop after this long, whatever happens.
    """

    url: str
    image_id: str
    params: dict[str, Any]
    clients: int = 8
    patience_s: float = 5.0
    pause_s: float = 0.1
    duration_s: float = 120.0
    outcomes: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> AutomaskFlood:
        self._threads = [
            threading.Thread(target=self._client, args=(k,), name=f"flood-{k}", daemon=True)
            for k in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.patience_s + 10)

    def _client(self, index: int) -> None:
        deadline = time.monotonic() + self.duration_s
        sent = 0
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent += 1
                nms = 0.5 + 0.5 * ((index * 7919 + sent * 104729) % 10_000) / 10_000  # never a cache hit
                body = {"image_id": self.image_id, **self.params, "box_nms_thresh": nms}
                outcome = self._send(session, body)
                with self._lock:
                    self.outcomes[outcome] += 1
                if outcome != "200":
                    self._stop.wait(self.pause_s)

    def _send(self, session: requests.Session, body: dict[str, Any]) -> str:
        try:
            answer = session.post(f"{self.url}/v1/automask", json=body, timeout=self.patience_s)
        except requests.Timeout:
            session.close()  # the abandoned connection is closed: the server sees the client leave
            return "abandoned"
        except requests.RequestException as exc:
            return type(exc).__name__
        return str(answer.status_code)
