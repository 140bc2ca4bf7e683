"""Exceptions that carry a stable error code and the HTTP status they map to.

Every error a user can cause is a :class:`SamError` subclass whose message says
how to fix the input. The server turns them into
``{"error": code, "detail": message}`` with ``status``; anything else is a bug
and becomes a 500 with no traceback sent to the client.
"""

from __future__ import annotations


class SamError(Exception):
    """Base class. ``code`` is machine-readable, the message is for people."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, echoes: tuple[str, ...] = ()) -> None:
        """``echoes``: strings of the client's own that the message quotes, to be shown whole
        (a mistyped model path), not cut to a file name like the server's own paths."""
        super().__init__(message)
        if code is not None:
            self.code = code
        self.echoes = echoes

    @property
    def detail(self) -> str:
        """The human-readable message."""
        return str(self)


class InvalidInput(SamError):
    """The request or argument is malformed (bad shape, NaN, out of range...)."""

    code = "invalid_input"
    status = 400


class InvalidImage(InvalidInput):
    """Image bytes that cannot be decoded (corrupt, truncated, unknown format)."""

    code = "invalid_image"


class NotFound(SamError):
    """An id (image, logits, model) that the server does not know."""

    code = "not_found"
    status = 404


class PayloadTooLarge(SamError):
    """A body or an image above the configured byte or pixel limit."""

    code = "payload_too_large"
    status = 413


class Unauthorized(SamError):
    """Missing or wrong access token."""

    code = "unauthorized"
    status = 401


class ServiceUnavailable(SamError):
    """Temporary: model not loaded yet, out of GPU memory, queue full."""

    code = "unavailable"
    status = 503


class WeightsUnavailable(SamError):
    """Model weights cannot be found locally nor downloaded (offline)."""

    code = "weights_unavailable"
    status = 503


class SamServerError(SamError):
    """An error answered by the model server (or the server is unreachable).

    Attributes:
        status: HTTP status (503 when the server could not be reached).
        code: The server's machine-readable error code.
        detail: The server's message (how to fix the request).
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, code=code)
        self.status = status

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {super().__str__()}"

    @property
    def detail(self) -> str:
        """The server's message."""
        return str(self.args[0])
