"""A tiny HTTP server on 127.0.0.1 that serves test images and redirects.

It plays Label Studio's file host (``/data/upload/...``) or an allowlisted
image host in the plugin tests, and records every request it receives so a
test can prove that a refused URL was never fetched. Paths in ``trickle``
are served one byte every ``trickle_interval_s`` (a slow host), until done or
until the host stops.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Seen:
    """One request the host received."""

    path: str
    authorization: str | None


@dataclass
class LocalImageHost:
    """Serves ``files`` (path -> bytes) and ``redirects`` (path -> Location) on 127.0.0.1."""

    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    trickle: dict[str, bytes] = field(default_factory=dict)
    trickle_interval_s: float = 2.0
    seen: list[Seen] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this host."""
        return self.base_url + path

    def start(self) -> LocalImageHost:
        """Listen on a free port in a daemon thread."""
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                host.seen.append(Seen(self.path, self.headers.get("Authorization")))
                path = urlsplit(self.path).path
                full = self.path
                if full in host.redirects or path in host.redirects:
                    self.send_response(302)
                    self.send_header("Location", host.redirects.get(full) or host.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in host.trickle:
                    self._trickle(host.trickle[path])
                    return
                data = host.files.get(full, host.files.get(path))
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _trickle(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(len(data)):
                    if host._stopping.wait(host.trickle_interval_s if i else 0):
                        return
                    try:
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-image-host",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (trickling answers end too) and close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def fetched(self, path: str) -> bool:
        """True if a request for ``path`` (with or without query) arrived."""
        return any(s.path == path or urlsplit(s.path).path == path for s in self.seen)
