"""A byte budget shared by threads: work reserves its memory before it starts, or waits.

The server keeps two (see :mod:`backend.serving.app`): image decodes (about
4 bytes per pixel each, reserved in :func:`backend.formats.images.decode_image`)
and mask answers being built (2 bytes per mask pixel, see
:data:`backend.serving.answer_budget.BYTES_PER_MASK_PIXEL`). A reservation larger
than the whole budget is cut to the budget: it runs, alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from backend.api.errors import ServiceUnavailable

DEFAULT_WAIT_S = 30.0
"""How long a reservation waits for room before the request gets 503."""
TRIM_AFTER_BYTES = 64 * 1024 * 1024
"""A released reservation at least this large hands the allocator's free memory back to the system."""


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def give_back_free_memory() -> None:
    """Return the C allocator's free memory to the system (glibc ``malloc_trim``; elsewhere nothing).

    Large temporary arrays freed in the middle of the heap otherwise stay in
    the process's resident memory.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class MemoryBudget:
    """At most ``capacity`` bytes reserved at once; :meth:`reserve` blocks until there is room.

    Args:
        capacity: Bytes that may be reserved at once.
        name: What the memory is for, in error messages (``image decoding``).
        wait_s: Longest wait for room; then :class:`ServiceUnavailable`.
    """

    def __init__(self, capacity: int, *, name: str, wait_s: float = DEFAULT_WAIT_S) -> None:
        self.name = name
        self.wait_s = wait_s
        self._capacity = max(1, int(capacity))
        self._used = 0
        self._peak = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def capacity(self) -> int:
        """Bytes that may be reserved at once."""
        return self._capacity

    def set_capacity(self, capacity: int) -> None:
        """Change the budget (waiting reservations are re-checked)."""
        with self._cond:
            self._capacity = max(1, int(capacity))
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        """``capacity``, ``used`` and ``peak`` bytes, and reservations ``waiting`` now."""
        with self._cond:
            return {
                "capacity": self._capacity,
                "used": self._used,
                "peak": self._peak,
                "waiting": self._waiting,
            }

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[int]:
        """Hold ``nbytes`` (at most the capacity) while the ``with`` block runs.

        Yields:
            The bytes actually reserved.

        Raises:
            ServiceUnavailable: No room within ``wait_s`` seconds.
        """
        wanted = max(0, int(nbytes))
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            wanted = min(wanted, self._capacity)
            self._waiting += 1
            try:
                while self._used + wanted > self._capacity:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ServiceUnavailable(
                            f"the server is busy with other large requests ({self.name}); retry in a few seconds"
                        )
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
            self._used += wanted
            self._peak = max(self._peak, self._used)
        try:
            yield wanted
        finally:
            with self._cond:
                self._used -= wanted
                self._cond.notify_all()
            if wanted >= TRIM_AFTER_BYTES:
                give_back_free_memory()


DECODE_BUDGET = MemoryBudget(512 * 1024 * 1024, name="image decoding")
"""The process's budget for image decodes; ``sam-server`` sets it from ``--decode-budget-mb``."""
