"""Timing ours and a reference side by side in one process (``bench_model_core``, ``bench_sam2``).

The functions run alternately, so that whatever else loads the machine hits
them alike; the table gives medians and ratios of wall time and of process
CPU time (the steadier figure when other processes share the machine), and
the median number of minor page faults per call: memory that malloc maps
afresh costs a fault per 4 KiB page on first touch, so a function that
allocates large temporaries is slower than its arithmetic, and how much
depends on what glibc kept from earlier calls (run with
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set high to time
without that cost).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple


class Timing(NamedTuple):
    """Measurements of each repeat of one function."""

    wall: list[float]
    """Wall seconds."""
    cpu: list[float]
    """Process CPU seconds."""
    faults: list[int]
    """Minor page faults of the process."""


def _minor_faults() -> int:
    """The process's minor page faults so far (0 where ``resource`` is missing: Windows)."""
    if sys.platform == "win32":
        return 0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, Timing]:
    """Time several functions alternately, ``warmup`` untimed calls each first."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, Timing] = {name: Timing([], [], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            faults, wall, cpu = _minor_faults(), time.perf_counter(), time.process_time()
            fn()
            times[name].wall.append(time.perf_counter() - wall)
            times[name].cpu.append(time.process_time() - cpu)
            times[name].faults.append(_minor_faults() - faults)
    return times


def row(name: str, timing: Timing, baseline: Timing | None, unit: str) -> str:
    """One table line: median wall and CPU time in ``unit`` ("ms" or "s"), each with the
    baseline's median over this one (the speed-up; none for the baseline itself), and
    the median page faults per call."""
    scale = 1e3 if unit == "ms" else 1.0
    wall, cpu = statistics.median(timing.wall), statistics.median(timing.cpu)
    if baseline is None:
        ratios = "      -", "      -"
    else:
        ratios = (
            f"{statistics.median(baseline.wall) / wall:6.2f}x",
            f"{statistics.median(baseline.cpu) / cpu:6.2f}x",
        )
    return (
        f"  {name:<54} wall {wall * scale:9.2f} {unit} {ratios[0]}   "
        f"cpu {cpu * scale:9.2f} {unit} {ratios[1]}   (wall min {min(timing.wall) * scale:.2f}, "
        f"faults {statistics.median(timing.faults):,.0f})"
    )
