"""Request metrics: the Prometheus families the guard records into, and their exposition.

Names follow OpenTelemetry's HTTP server conventions (``http.server.request.duration`` becomes
``http_server_request_duration_seconds``). Families are created once per registry and shared by
every guard using it, so a second guard (tests, reloads) never fails with "Duplicated timeseries".
Label children are cached, so a steady route costs one dict lookup and one ``observe``.

Under several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` before the first import of
``prometheus_client`` (``launchguard.gunicorn`` does it for gunicorn); the scrape then shows the
sum over all workers.
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left
from itertools import accumulate
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["DURATION", "RequestMetrics", "RequestStore", "exposition", "multiprocess_dir"]

DURATION = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
BUILD_INFO = "launchguard_build_info"
INTERNAL_ERRORS = "launchguard_internal_errors"

#: Most distinct ``error_type`` values kept; the rest count as ``_OTHER``.
MAX_ERROR_TYPES = 100

_DURATION_HELP = "Duration of HTTP server requests, to the last body byte."
_ACTIVE_HELP = "Number of HTTP server requests in flight."
_LABELS = ("http_request_method", "http_route", "http_response_status_code", "error_type")
_bundles: weakref.WeakKeyDictionary[CollectorRegistry, RequestMetrics] = weakref.WeakKeyDictionary()
_bundles_lock = threading.Lock()


def multiprocess_dir() -> str | None:
    """The prometheus-client multiprocess directory, if multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 - prometheus-client's legacy name
    )


class RequestStore:
    """The request histogram and in-flight gauge of one process, as a registry collector.

    prometheus-client's own ``Histogram`` takes two locks and a linear bucket scan per
    observation; this keeps each label set's bucket counts in a list, finds the bucket with
    ``bisect`` and takes one lock, for a third of the cost. Used when not in multiprocess mode
    (there, the values must live in prometheus-client's shared files).
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = list(buckets)
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._width = len(buckets) + 2  # one count per bucket, +Inf, then the sum
        self._series: dict[tuple[str, str, str, str], list[float]] = {}
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self, method: str) -> None:
        with self._lock:
            self._active[method] = self._active.get(method, 0) + 1

    def record(self, key: tuple[str, str, str, str], seconds: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, [0.0] * self._width)
        index = bisect_left(self._bounds, seconds)
        with self._lock:
            series[index] += 1
            series[-1] += seconds
            self._active[key[0]] -= 1

    def describe(self) -> list[Metric]:
        return [
            HistogramMetricFamily(DURATION, _DURATION_HELP, labels=_LABELS),
            GaugeMetricFamily(ACTIVE, _ACTIVE_HELP, labels=("http_request_method",)),
        ]

    def collect(self) -> list[Metric]:
        with self._lock:
            snapshot = [(key, list(values)) for key, values in self._series.items()]
            active = list(self._active.items())
        histogram = HistogramMetricFamily(DURATION, _DURATION_HELP, labels=_LABELS)
        for key, values in snapshot:
            cumulative = list(accumulate(values[:-1]))
            histogram.add_metric(
                list(key), list(zip(self._les, cumulative, strict=True)), values[-1]
            )
        gauge = GaugeMetricFamily(ACTIVE, _ACTIVE_HELP, labels=("http_request_method",))
        for method, count in active:
            gauge.add_metric([method], count)
        return [histogram, gauge]


class _SharedStore:
    """The same interface on prometheus-client's metrics, for multiprocess mode."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.duration = Histogram(DURATION, _DURATION_HELP, _LABELS, buckets=buckets,
                                  registry=registry)  # fmt: skip
        self.active = Gauge(ACTIVE, _ACTIVE_HELP, ("http_request_method",), registry=registry,
                            multiprocess_mode="livesum")  # fmt: skip
        self._children: dict[tuple[str, str, str, str], Any] = {}
        self._gauges: dict[str, Any] = {}

    def start(self, method: str) -> None:
        gauge = self._gauges.get(method)
        if gauge is None:
            gauge = self._gauges[method] = self.active.labels(method)
        gauge.inc()

    def record(self, key: tuple[str, str, str, str], seconds: float) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(*key)
        child.observe(seconds)
        self._gauges[key[0]].dec()


class RequestMetrics:
    """The guard's metric families in one registry."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.registry = registry
        self.buckets = buckets
        self._collectors: list[Any] = []
        if multiprocess_dir():
            shared = _SharedStore(registry, buckets)
            self._collectors += [shared.duration, shared.active]
            self.store: RequestStore | _SharedStore = shared
        else:
            self.store = RequestStore(buckets)
            registry.register(self.store)
            self._collectors.append(self.store)
        self.build_info = Gauge(
            BUILD_INFO,
            "The running build: always 1, the labels carry the information.",
            ("service", "version", "release"),
            registry=registry,
            multiprocess_mode="max",
        )
        self.internal_errors = Counter(
            INTERNAL_ERRORS,
            "Internal failures of launchguard, by component; the requests were not affected.",
            ("component",),
            registry=registry,
        )
        self._collectors += [self.build_info, self.internal_errors]
        self._error_types: set[str] = set()
        #: In-flight +1 for a request of this (normalised) method.
        self.start = self.store.start

    @classmethod
    def for_registry(
        cls, registry: CollectorRegistry | None, buckets: tuple[float, ...]
    ) -> RequestMetrics:
        """The shared families of ``registry`` (default: the global one), created if needed.

        A guard asking for other buckets replaces the families (a reload with new settings).
        """
        registry = REGISTRY if registry is None else registry
        with _bundles_lock:
            bundle = _bundles.get(registry)
            if bundle is not None and bundle.buckets == buckets:
                return bundle
            if bundle is not None:
                bundle.unregister()
            bundle = cls(registry, buckets)
            _bundles[registry] = bundle
            return bundle

    def unregister(self) -> None:
        """Remove the families from their registry."""
        for collector in self._collectors:
            try:
                self.registry.unregister(collector)
            except KeyError:
                pass

    def observe(
        self, method: str, route: str, status: str, error_type: str, seconds: float
    ) -> None:
        """Record one finished request (and take it off the in-flight gauge)."""
        if error_type and error_type not in self._error_types:
            if len(self._error_types) >= MAX_ERROR_TYPES:
                error_type = "_OTHER"
            else:
                self._error_types.add(error_type)
        self.store.record((method, route, status, error_type), seconds)

    def set_build_info(self, service: str, version: str, release: str) -> None:
        """Publish the running build."""
        self.build_info.labels(service, version, release).set(1)

    def count_internal_error(self, component: str) -> None:
        """Count one internal failure of ``component``."""
        self.internal_errors.labels(component).inc()

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """Render this registry (or all workers' files) for the ``Accept`` header given."""
        return exposition(self.registry, accept)


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """(body, content type) of ``registry`` in the format ``accept`` asks for.

    OpenMetrics when the scraper asks for it, else the Prometheus text format. In multiprocess
    mode the body aggregates every worker's files instead.
    """
    encoder, content_type = choose_encoder(accept)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return encoder(registry), content_type
