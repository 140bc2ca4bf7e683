"""The HTTP front end of ``sam-server``: waitress, with read deadlines and JSON error pages.

Why waitress: one asyncore thread reads every connection, and a request
reaches one of the ``--threads`` handler threads only once its headers and
its whole body are buffered (bodies above 512 KiB spill to a temporary file).
A slow or idle client therefore holds a socket, never a handler thread, and
``/health`` and predictions keep answering next to them. gunicorn's
``gthread`` worker, which ``sam-server`` used before, reads each request in a
handler thread: 16 clients trickling header lines stalled every route.

Added on top of waitress here:

* **Deadlines** (closed with ``408``): a request's line and headers must
  arrive within ``header_timeout_s`` of its first byte (or of the connection,
  for a client that sends nothing); its body within ``body_timeout_s`` after
  the headers. A kept-alive connection with no request is closed after
  ``idle_timeout_s``. waitress itself only closes connections that are
  inactive; a client sending a byte now and then would keep its socket, and
  a request stalled mid-way would be dropped without an answer at the idle
  timeout, before a longer deadline.
* **Limits**: a request line above :data:`MAX_REQUEST_LINE` bytes gets 414,
  headers above :data:`MAX_HEADER_BYTES` 431, a body above the server's limit
  413 before it is read (``Content-Length``) or as soon as it passes the
  limit (chunked), at most ``max_connections`` open connections.
* **JSON error pages**: every answer waitress writes itself is
  ``{"error": code, "detail": message}`` like the application's, with no
  traceback or client input echoed.
"""

from __future__ import annotations

import json
import logging
import resource
import socket
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import BadRequest

from backend.serving.config import ServerConfig

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_REQUEST_LINE = 8190
"""Longest request line (method, URL, version) in bytes; longer gets 414."""
MAX_HEADER_BYTES = 64 * 1024
"""Most bytes of request line plus headers; more gets 431."""
CHECK_INTERVAL_S = 1.0
"""How often the deadlines of open connections are checked."""

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the HTTP request is malformed"),
    408: ("request_timeout", "the request did not arrive in time; send it again"),
    413: ("payload_too_large", "the request body is larger than the server's limit of {max_body_mb} MiB"),
    414: ("uri_too_long", f"the request line is longer than {MAX_REQUEST_LINE} bytes; shorten the URL"),
    431: ("headers_too_large", f"the request headers are larger than {MAX_HEADER_BYTES} bytes"),
    500: ("internal_error", "internal server error; the server logged the details"),
    501: ("not_implemented", "the request uses a transfer encoding this server does not implement"),
}


def error_body(status: int, max_body_mb: int) -> bytes:
    """The JSON body of an error the front end answers itself."""
    code, detail = _ERRORS.get(status, _ERRORS[400])
    return json.dumps({"error": code, "detail": detail.format(max_body_mb=max_body_mb)}).encode()


class UriTooLong(BadRequest):
    """waitress error for a request line above :data:`MAX_REQUEST_LINE`."""

    code = 414
    reason = "URI Too Long"


class RequestTimeout(BadRequest):
    """waitress error for a request that missed its deadline."""

    code = 408
    reason = "Request Timeout"


class LineLimitedParser(HTTPRequestParser):
    """waitress's parser plus a limit on the request line (414)."""

    def received(self, data: bytes) -> int:
        """Parse ``data``; refuse a request line above :data:`MAX_REQUEST_LINE` bytes."""
        consumed = int(super().received(data))
        error: Any = getattr(self, "error", None)
        if error is None and self._request_line_length() > MAX_REQUEST_LINE:
            if not self.headers_finished:
                self.parse_header(b"GET / HTTP/1.0\r\n")  # version etc. for the error answer
            self.error = UriTooLong("request line too long")
            self.completed = True
        return consumed

    def _request_line_length(self) -> int:
        if self.headers_finished:
            return len(getattr(self, "first_line", b""))
        pending = self.header_plus.lstrip()
        end = pending.find(b"\n")
        return end if end >= 0 else len(pending)


class JsonErrorTask(ErrorTask):
    """Writes waitress's own error answers as ``{"error", "detail"}`` JSON."""

    def execute(self) -> None:
        """Answer the request's error with a JSON body and close the connection."""
        error = self.request.error
        max_body_mb = self.channel.server.max_body_mb
        body = error_body(int(error.code), max_body_mb)
        if int(error.code) >= 500:
            log.warning("front end answered %s %s: %s", error.code, error.reason, error.body)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DeadlineChannel(HTTPChannel):
    """A waitress connection that knows when its current request must have arrived."""

    parser_class = LineLimitedParser
    error_task_class = JsonErrorTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_started: float | None = time.monotonic()  # a new connection must send a request
        self.headers_done: float | None = None
        self.timed_out = False

    def received(self, data: bytes) -> bool:
        """Buffer ``data``, noting when the request in progress started and when its headers ended."""
        if self.request is None and self.request_started is None and data.strip():
            self.request_started = time.monotonic()
        accepted = bool(super().received(data))
        pending = self.request
        if pending is None:  # nothing partial: the idle timeout applies, not a deadline
            self.request_started = None
            self.headers_done = None
        elif pending.headers_finished and self.headers_done is None:
            self.headers_done = time.monotonic()
        return accepted

    def receiving(self) -> bool:
        """True while a request is on its way in (its deadlines, not the idle timeout, apply)."""
        return not self.requests and self.request_started is not None and not self.timed_out

    def overdue(self, now: float, header_timeout_s: float, body_timeout_s: float) -> bool:
        """True when the request being received missed its header or body deadline."""
        started = self.request_started
        if not self.receiving() or started is None:
            return False  # answered by its handler, idle, or already timed out
        if self.headers_done is not None:
            return now - self.headers_done > body_timeout_s
        return now - started > header_timeout_s

    def time_out(self, max_body_mb: int) -> None:
        """Answer ``408`` and close once it is sent (runs on the front end's loop thread)."""
        self.timed_out = True
        body = error_body(408, max_body_mb)
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        try:
            self.write_soon(head + body)
        except ClientDisconnected:
            self.will_close = True
            return
        self.close_when_flushed = True


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server whose connections are :class:`DeadlineChannel` objects."""

    channel_class = DeadlineChannel

    def __init__(
        self,
        application: Any,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        max_body_mb: int,
        **kwargs: Any,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_body_mb = max_body_mb
        super().__init__(application, **kwargs)

    def maintenance(self, now: float) -> None:
        """Answer ``408`` to overdue requests and close idle connections.

        waitress's own rule (close what has been inactive for ``channel_timeout``,
        the idle timeout) is applied only to connections with no request on its
        way in: a request that stalls has its header or body deadline, which may
        be longer, and gets a ``408`` rather than a silent close.
        """
        cutoff = now - self.adj.channel_timeout  # waitress's clock: time.time()
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            if isinstance(channel, DeadlineChannel) and channel.receiving():
                if channel.overdue(clock, self.header_timeout_s, self.body_timeout_s):
                    log.debug("closing a connection from %s: request not received in time", channel.addr)
                    channel.time_out(self.max_body_mb)
            elif not channel.requests and channel.last_activity < cutoff:
                channel.will_close = True


def adjustments(config: ServerConfig) -> Adjustments:
    """waitress settings for ``config`` (see the module docstring)."""
    return Adjustments(
        listen=listen_address(config.host, config.port),
        threads=config.threads,
        connection_limit=config.max_connections,
        channel_timeout=config.idle_timeout_s,
        cleanup_interval=CHECK_INTERVAL_S,
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=config.max_body_mb * MiB + 1,  # waitress refuses at >=
        channel_request_lookahead=1,  # keeps reading, so waitress.client_disconnected works
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        ident="sam-server",
        expose_tracebacks=False,
        log_socket_errors=False,
    )


def listen_address(host: str, port: int) -> str:
    """waitress ``listen`` value (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def create_front_end(app: Any, config: ServerConfig) -> GuardedServer | MultiSocketServer:
    """Bind ``config.host:config.port`` and return the server; ``.run()`` serves until stopped.

    Args:
        app: The WSGI application (:func:`backend.serving.app.create_app`).
        config: Address, threads, limits and timeouts.

    Returns:
        One server, or waitress's ``MultiSocketServer`` when the host name
        resolves to several addresses (``localhost``: IPv4 and IPv6).
    """
    adj = adjustments(config)
    raise_open_file_limit(config.max_connections + config.threads + 64)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict[int, Any] = {}
    servers = [
        GuardedServer(
            app,
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
            max_body_mb=config.max_body_mb,
            map=socket_map,
            dispatcher=dispatcher,
            adj=adj,
            sockinfo=sockinfo,
        )
        for sockinfo in adj.listen
    ]
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)


def raise_open_file_limit(wanted: int) -> None:
    """Raise this process's soft limit of open files towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def effective_port(server: GuardedServer | MultiSocketServer) -> int:
    """The TCP port the front end listens on (useful with port 0)."""
    if isinstance(server, MultiSocketServer):
        return int(server.effective_listen[0][1])
    name = server.socket.getsockname()
    return int(name[1]) if server.family in (socket.AF_INET, socket.AF_INET6) else 0
