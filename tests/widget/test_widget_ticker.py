"""Ticker: a progress clock that calls back while blocking work runs, and never after it stops."""

from __future__ import annotations

import threading

from widget.ticker import Ticker


def test_ticks_arrive_while_the_block_runs_and_none_after_it() -> None:
    ticks: list[float] = []
    third = threading.Event()

    def on_tick(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            third.set()

    with Ticker(on_tick, interval=0.01) as ticker:
        assert third.wait(10), "the ticker did not tick"
    stopped = len(ticks)
    assert ticks == sorted(ticks) and ticks[0] > 0
    assert ticker.stop() >= ticks[-1]  # stopping twice is harmless
    threading.Event().wait(10 * ticker.interval)  # ten intervals in which a live ticker would tick
    assert len(ticks) == stopped
