"""Has the client of a WSGI request disconnected? (Best effort.)

WSGI gives a handler no standard way to learn that its client left. The
servers this project runs under expose the connection, so a handler that
waits for the model thread can look at it now and then:

* waitress: ``environ["waitress.client_disconnected"]``, a callable;
* gunicorn: ``environ["gunicorn.socket"]``;
* werkzeug's development server: ``environ["werkzeug.socket"]``.

A socket whose peer closed it is readable and reads end-of-file; one that is
merely idle is not readable. Peeking never consumes bytes. Behind a proxy this
sees the proxy's connection, which most proxies close when their client leaves.
A client that half-closes its side (``shutdown(SHUT_WR)``) after sending the
request looks gone too; HTTP clients do not do that while they wait for an answer.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Mapping
from typing import Any

_EVENTS = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2) | getattr(select, "POLLRDHUP", 0)


def disconnect_probe(environ: Mapping[str, Any]) -> Callable[[], bool] | None:
    """A callable that returns True once the request's client has disconnected.

    Args:
        environ: The WSGI environ of the request.

    Returns:
        The probe, or None when the server does not expose the connection
        (Flask's test client, other servers).
    """
    waitress = environ.get("waitress.client_disconnected")
    if callable(waitress):
        return lambda: bool(waitress())
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket) and hasattr(select, "poll"):
        return lambda: socket_closed(sock)
    return None


def socket_closed(sock: socket.socket) -> bool:
    """True when the peer has closed (or reset) ``sock``; never blocks, never reads data away."""
    try:
        poller = select.poll()
        poller.register(sock.fileno(), _EVENTS)
        events = poller.poll(0)
    except (OSError, ValueError):  # closed here already (fileno -1)
        return True
    if not events:
        return False  # idle: nothing to read, no hang-up
    _, mask = events[0]
    if mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:  # reset by the peer
        return True
