"""A clock for progress displays: calls back with the elapsed seconds while work runs elsewhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

TICK_SECONDS = 0.25


class Ticker:
    """Calls ``on_tick(seconds_elapsed)`` every ``interval`` seconds in a daemon thread.

    Use it as a context manager around blocking work; leaving the block stops
    the thread and waits for it, so no tick arrives after the block.

    Args:
        on_tick: Called with the seconds since the ticker started.
        interval: Seconds between calls.
    """

    def __init__(self, on_tick: Callable[[float], None], *, interval: float = TICK_SECONDS) -> None:
        self.on_tick = on_tick
        self.interval = interval
        self.start_time = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sam-widget-ticker", daemon=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the ticker started."""
        return time.perf_counter() - self.start_time

    def start(self) -> Ticker:
        """Start ticking; returns self."""
        self.start_time = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop ticking and wait for the thread; returns the seconds elapsed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.elapsed

    def __enter__(self) -> Ticker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.on_tick(self.elapsed)
