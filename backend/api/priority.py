"""Which queue a request's model work waits in: a person waiting, or batch work.

Shared by the HTTP API (``?priority=bulk``), both clients and the server's
scheduler (:mod:`backend.serving.scheduling`).
"""

from __future__ import annotations

from enum import Enum

from backend.api.errors import InvalidInput


class Priority(str, Enum):
    """Which queue a job waits in: interactive work always runs first."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


def parse_priority(value: Priority | str | None) -> Priority:
    """A request's ``priority`` parameter (``interactive`` when absent).

    Raises:
        InvalidInput: Any other value.
    """
    if isinstance(value, Priority):
        return value
    if value is None or value == "":
        return Priority.INTERACTIVE
    try:
        return Priority(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"priority must be 'interactive' (a person waits) or 'bulk' (batch work), got {value[:40]!r}"
        ) from None
