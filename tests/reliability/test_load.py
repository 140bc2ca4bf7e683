"""Load: 16 concurrent clients against a real ``sam-server`` on 127.0.0.1.

Asserts zero errors, every answer correct for its own request (no
cross-talk between images or clients) and memory bounded by the configured
cache. Latency percentiles are printed here for information and measured
properly by ``benchmarks/bench_load.py``.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.reliability.load_driver import expected_masks, make_workload, process_tree_rss, run_load
from tests.serving.server_process import ServerProcess

CACHE_MB = 1
RSS_SLACK_MB = 300
"""Growth allowed on top of the caches' budgets: allocator arenas of 16 threads, front-end buffers."""


def _metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} missing from /metrics"
    return float(match.group(1))


@pytest.mark.slow
def test_sixteen_clients_get_their_own_correct_answers_with_bounded_memory(tiny_checkpoint):
    workload = make_workload(40)  # distinct sizes, so an answer for another image cannot pass
    expected = expected_masks(tiny_checkpoint, workload)
    server = ServerProcess(
        "--model",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--cache-mb",
        str(CACHE_MB),
        "--threads",
        "16",
        "--no-plugins",
        "--log-level",
        "WARNING",
    )
    server.start(timeout=120)
    try:
        assert server.process is not None
        rss_before = process_tree_rss(server.process.pid)
        result = run_load(server.url, workload, expected, clients=16, duration_s=20.0)
        rss_after = process_tree_rss(server.process.pid)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        alive = server.process.poll() is None
    finally:
        server.stop()
    p50, p99 = result.percentiles("predict")
    print(
        f"load: {result.requests} requests, {result.checked} answers checked, predict p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms; server RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
    )
    assert alive
    assert result.errors == []
    assert result.mismatches == []
    assert result.checked >= 50
    assert _metric(metrics, "sam_cache_bytes", 'cache="embeddings"') <= CACHE_MB * 2**20
    # caches that can still grow: images (tiny here, < 3 MiB for the workload) and logits (256 MiB budget)
    assert rss_after - rss_before <= (CACHE_MB + 3 + 256 + RSS_SLACK_MB) * 2**20
