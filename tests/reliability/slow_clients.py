"""Slow and idle HTTP clients against a server on 127.0.0.1 (bounded in count and time).

Three kinds, in turn: one that trickles its header lines a byte at a time,
one that sends complete headers and then trickles its body, and one that
connects and sends nothing. One background thread feeds them all; it stops
by itself after ``duration_s`` and every socket is closed on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

KINDS = ("headers", "body", "idle")


@dataclass
class SlowSocket:
    """One attacking connection and the bytes it still has to trickle."""

    kind: str
    sock: socket.socket
    pending: bytes
    closed_by_server: bool = False
    answer: bytes = b""


def _request(kind: str, host: str, port: int) -> tuple[bytes, bytes]:
    """(bytes sent at once, bytes trickled) for one kind of slow client."""
    if kind == "headers":
        return b"", (
            f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow-1: {'a' * 200}\r\n"
            f"X-Slow-2: {'b' * 200}\r\n\r\n"
        ).encode()
    if kind == "body":
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000\r\n\r\n"
        ).encode()
        return head, b"{" + b" " * 999_999
    return b"", b""


@dataclass
class SlowClients:
    """``count`` slow or idle connections to ``host:port`` while the ``with`` block runs.

    Args:
        port: The server's port on ``host``.
        count: Connections, split evenly over :data:`KINDS`.
        interval_s: Pause between two trickled bytes of one connection.
        duration_s: The feeding thread stops after this long, whatever happens.
        host: Always loopback.
    """

    port: int
    count: int = 128
    interval_s: float = 0.5
    duration_s: float = 60.0
    host: str = "127.0.0.1"
    sockets: list[SlowSocket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SlowClients:
        for i in range(self.count):
            kind = KINDS[i % len(KINDS)]
            sock = socket.create_connection((self.host, self.port), timeout=5)
            first, trickle = _request(kind, self.host, self.port)
            sock.sendall(first)
            sock.setblocking(False)
            self.sockets.append(SlowSocket(kind, sock, trickle))
        self._thread = threading.Thread(target=self._feed, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for slow in self.sockets:
            slow.sock.close()

    def _feed(self) -> None:
        deadline = time.monotonic() + self.duration_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            for slow in self.sockets:
                self._poll(slow)
            self._stop.wait(self.interval_s)

    def _poll(self, slow: SlowSocket) -> None:
        """Read what the server sent (noting a close), then trickle one byte."""
        if slow.closed_by_server:
            return
        try:
            data = slow.sock.recv(4096)
        except BlockingIOError:
            data = None
        except OSError:
            slow.closed_by_server = True
            return
        if data == b"":
            slow.closed_by_server = True
            return
        if data:
            slow.answer += data
        if slow.pending:
            try:
                slow.sock.send(slow.pending[:1])
                slow.pending = slow.pending[1:]
            except BlockingIOError:
                pass
            except OSError:
                slow.closed_by_server = True

    def closed(self, kind: str | None = None) -> int:
        """How many connections (of ``kind``) the server has closed so far."""
        return sum(1 for s in self.sockets if s.closed_by_server and kind in (None, s.kind))
