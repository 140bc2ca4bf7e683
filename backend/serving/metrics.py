"""Prometheus metrics of one app: requests, latencies, caches, queue depth.

Request labels come from fixed sets (route templates, a list of methods,
status codes), so made-up methods or paths cannot grow ``/metrics``.

Each app owns its :class:`~prometheus_client.CollectorRegistry`, so several
apps (tests) never clash in the global registry. Cache and queue figures are
read from the service when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from backend.memory_budget import MemoryBudget
    from backend.serving.service import SamService

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""``method`` label values; any other method is counted as ``other``."""
LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class _ServiceCollector(Collector):
    """Reads cache counters and queue depth from the service at scrape time."""

    def __init__(self, service: SamService) -> None:
        self._service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._service.cache_stats()
        hits = CounterMetricFamily("sam_cache_hits", "Cache lookups that found their key.", labels=["cache"])
        misses = CounterMetricFamily("sam_cache_misses", "Cache lookups that missed.", labels=["cache"])
        nbytes = GaugeMetricFamily("sam_cache_bytes", "Bytes held by each cache.", labels=["cache"])
        entries = GaugeMetricFamily("sam_cache_entries", "Entries held by each cache.", labels=["cache"])
        for name, s in stats.items():
            hits.add_metric([name], s.hits)
            misses.add_metric([name], s.misses)
            nbytes.add_metric([name], s.nbytes)
            entries.add_metric([name], s.entries)
        yield from (hits, misses, nbytes, entries)
        yield GaugeMetricFamily(
            "sam_queue_depth", "Work items waiting for the GPU worker.", value=self._service.queue_depth()
        )
        yield CounterMetricFamily(
            "sam_decoder_calls", "Batched mask-decoder calls.", value=self._service.decoder_calls
        )
        yield CounterMetricFamily(
            "sam_encoder_calls", "Image-encoder calls.", value=self._service.encoder_calls
        )
        ready = GaugeMetricFamily(
            "sam_model_ready", "1 when the model is loaded, per served model.", labels=["model"]
        )
        for model in self._service.models():
            ready.add_metric([model["name"]], float(model["ready"]))
        yield ready


class _BudgetCollector(Collector):
    """Reads the memory budgets (decodes, mask answers) at scrape time."""

    def __init__(self, budgets: tuple[MemoryBudget, ...]) -> None:
        self._budgets = budgets

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nbytes = GaugeMetricFamily(
            "sam_memory_budget_bytes",
            "Memory budgets: capacity, bytes reserved now, and the most reserved at once.",
            labels=["budget", "kind"],
        )
        waiting = GaugeMetricFamily(
            "sam_memory_budget_waiting", "Requests waiting for room in a memory budget.", labels=["budget"]
        )
        for budget in self._budgets:
            stats = budget.stats()
            for kind in ("capacity", "used", "peak"):
                nbytes.add_metric([budget.name, kind], stats[kind])
            waiting.add_metric([budget.name], stats["waiting"])
        yield from (nbytes, waiting)


class ServerMetrics:
    """The metrics of one Flask app.

    Args:
        service: Read for cache, queue and model figures.
        budgets: Memory budgets to export (``sam_memory_budget_*``).
    """

    def __init__(self, service: SamService, budgets: tuple[MemoryBudget, ...] = ()) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sam_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sam_http_request_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))
        if budgets:
            self.registry.register(_BudgetCollector(budgets))

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request.

        Args:
            route: The matched route template (``/v1/images/<image_id>``) or
                ``unmatched``, never the raw path, so the label set stays fixed.
            method: The HTTP method; one outside :data:`METHODS` counts as ``other``.
            status: The answer's HTTP status.
            seconds: Time from the request's start to its answer.
        """
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """Prometheus text exposition format."""
        return generate_latest(self.registry)
