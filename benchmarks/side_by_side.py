"""Timing ours and a reference side by side in one process (``bench_model_core``, ``bench_sam2``).

The functions run alternately, so that whatever else loads the machine hits
them alike; the table gives medians and ratios of wall time and of process
CPU time (the steadier figure when other processes share the machine).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Timing = tuple[list[float], list[float]]
"""Wall seconds and process CPU seconds of each repeat."""


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, Timing]:
    """Time several functions alternately, ``warmup`` untimed calls each first."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, Timing] = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


def row(name: str, timing: Timing, baseline: Timing | None, unit: str) -> str:
    """One table line: median wall and CPU time in ``unit`` ("ms" or "s"), each with the
    baseline's median over this one (the speed-up; none for the baseline itself)."""
    scale = 1e3 if unit == "ms" else 1.0
    wall, cpu = statistics.median(timing[0]), statistics.median(timing[1])
    if baseline is None:
        ratios = "      -", "      -"
    else:
        ratios = (
            f"{statistics.median(baseline[0]) / wall:6.2f}x",
            f"{statistics.median(baseline[1]) / cpu:6.2f}x",
        )
    return (
        f"  {name:<54} wall {wall * scale:9.2f} {unit} {ratios[0]}   "
        f"cpu {cpu * scale:9.2f} {unit} {ratios[1]}   (wall min {min(timing[0]) * scale:.2f})"
    )
