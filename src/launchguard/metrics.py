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

import itertools
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

__all__ = [
    "DURATION",
    "FastHistogram",
    "RequestMetrics",
    "RequestStore",
    "exposition",
    "multiprocess_dir",
]

DURATION = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
BUILD_INFO = "launchguard_build_info"
INTERNAL_ERRORS = "launchguard_internal_errors"

#: Most distinct ``error_type`` values kept; the rest count as ``_OTHER``.
MAX_ERROR_TYPES = 100

_DURATION_HELP = "Duration of HTTP server requests, to the last body byte."
_ACTIVE_HELP = "Number of HTTP server requests in flight."
_LABELS = ("http_request_method", "http_route", "http_response_status_code", "error_type")
DB_QUERIES = (
    "launchguard_db_queries_per_request",
    "Database statements issued per request.",
    ("http_route",),
    (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0),
)
DB_TIME = (
    "launchguard_db_time_per_request_seconds",
    "Time spent in database statements per request.",
    ("http_route",),
    (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
FINDINGS = "launchguard_query_findings"
ROUTE_BUDGET = "launchguard_route_budget_seconds"
ROUTE_BUDGET_BREACHED = "launchguard_route_budget_breached"
_bundles: weakref.WeakKeyDictionary[CollectorRegistry, RequestMetrics] = weakref.WeakKeyDictionary()
_bundles_lock = threading.Lock()


def multiprocess_dir() -> str | None:
    """The prometheus-client multiprocess directory, if multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 - prometheus-client's legacy name
    )


#: Most observations a ``FastHistogram`` holds before folding them into its buckets.
FOLD_BATCH = 256


class FastHistogram:
    """One histogram family of this process, as a registry collector.

    prometheus-client's own ``Histogram`` takes two locks and a linear bucket scan per
    observation. Here an observation is one ``deque.append`` (atomic under the GIL, no lock):
    the values are folded into each label set's bucket counts (found with ``bisect``) in
    batches of up to :data:`FOLD_BATCH`, by the observation that fills a batch and by every
    scrape, under one lock. A request then pays a few nanoseconds instead of the lock, the
    lookups and the updates, which in the middle of a request's work (cold caches) cost it
    about two microseconds; the batch pays them once, hot. Used when not in multiprocess mode
    (there, the values must live in prometheus-client's shared files).

    :meth:`exemplar` keeps the last exemplar (a trace id) of each bucket of each series; they
    appear in OpenMetrics scrapes only, as the Prometheus text format has no exemplars.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
        lock: threading.Lock | None = None,
    ) -> None:
        self.name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = list(buckets)
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._width = len(buckets) + 2  # one count per bucket, +Inf, then the sum
        self._series: dict[tuple[str, ...], list[float]] = {}
        #: Per series, the last exemplar of each bucket; made on a series' first exemplar.
        self._exemplars: dict[tuple[str, ...], list[Exemplar | None]] = {}
        #: Guards ``_series`` and ``_exemplars`` (``lock``: shared with whoever else folds
        #: into them).
        self._lock = lock or threading.Lock()
        #: Observations not yet folded into ``_series``: (label values, value).
        self._pending: deque[tuple[tuple[str, ...], float]] = deque()

    def observe(self, key: tuple[str, ...], value: float) -> None:
        """Record ``value`` under the label values ``key``."""
        pending = self._pending
        pending.append((key, value))
        if len(pending) >= FOLD_BATCH:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Fold every pending observation into the bucket counts (the lock is held).

        ``popleft`` until empty: an observation appended meanwhile by another thread is
        folded now or by the next fold, never lost."""
        pop = self._pending.popleft
        series_of = self._series
        bounds = self._bounds
        while True:
            try:
                key, value = pop()
            except IndexError:
                return
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = [0.0] * self._width
            series[bisect_left(bounds, value)] += 1
            series[-1] += value

    def exemplar(self, key: tuple[str, ...], value: float, labels: dict[str, str]) -> None:
        """Keep ``labels`` (a trace id) as the exemplar of the bucket ``value`` fell in."""
        exemplars = self._exemplars.get(key)
        if exemplars is None:  # a series' first: under the lock, as a scrape may be reading
            with self._lock:
                exemplars = self._exemplars.setdefault(key, [None] * (self._width - 1))
        exemplars[bisect_left(self._bounds, value)] = Exemplar(labels, value, time.time())

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[Metric]:
        with self._lock:
            self._fold()
            snapshot = self._snapshot()
        return [self._family(snapshot)]

    def _snapshot(self) -> tuple[list[tuple[tuple[str, ...], list[float]]], dict[Any, Any]]:
        """Copies of the series and their exemplars (the lock is held)."""
        series = [(key, list(values)) for key, values in self._series.items()]
        return series, {key: list(values) for key, values in self._exemplars.items()}

    def _family(
        self, snapshot: tuple[list[tuple[tuple[str, ...], list[float]]], dict[Any, Any]]
    ) -> Metric:
        series, exemplars = snapshot
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for key, values in series:
            buckets: list[Any] = list(zip(self._les, accumulate(values[:-1]), strict=True))
            marks = exemplars.get(key)
            if marks is not None:
                buckets = [
                    bucket if mark is None else (*bucket, mark)
                    for bucket, mark in zip(buckets, marks, strict=True)
                ]
            family.add_metric(list(key), buckets, values[-1])
        return family


class RequestStore(FastHistogram):
    """The request-duration histogram plus the in-flight gauge.

    A request's start is one call of a per-method ``itertools.count`` (atomic under the GIL,
    no lock, no Python frame); its end is its observation, counted at a scrape (which folds
    first) from the histogram's own counts. The gauge is starts minus ends.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        super().__init__(DURATION, _DURATION_HELP, _LABELS, buckets)
        self._starts: dict[str, itertools.count[int]] = {}
        #: The same method as ``observe`` (the request's end is counted from its observation).
        self.record = self.observe

    def starter(self, method: str) -> Callable[[], object]:
        """The zero-argument callable that marks one request of ``method`` as started."""
        with self._lock:
            counter = self._starts.get(method)
            if counter is None:
                counter = self._starts[method] = itertools.count()
        return counter.__next__

    def describe(self) -> list[Metric]:
        return [
            *super().describe(),
            GaugeMetricFamily(ACTIVE, _ACTIVE_HELP, labels=("http_request_method",)),
        ]

    def collect(self) -> list[Metric]:
        with self._lock:  # the histogram and the gauge from the same moment
            self._fold()
            snapshot = self._snapshot()
            # ``count`` shows its next value, the number of starts so far: "count(12)".
            started = {method: int(repr(c)[6:-1]) for method, c in self._starts.items()}
        ended: dict[str, float] = {}
        for key, values in snapshot[0]:  # a series' observations: its bucket counts
            ended[key[0]] = ended.get(key[0], 0.0) + sum(values[:-1])
        gauge = GaugeMetricFamily(ACTIVE, _ACTIVE_HELP, labels=("http_request_method",))
        for method, count in started.items():
            gauge.add_metric([method], count - int(ended.get(method, 0)))
        return [self._family(snapshot), gauge]


class QueryHistograms:
    """Statements and database time per request, by route: one observation per request
    feeds both histograms (one ``deque.append``; the pair is folded straight into both, under
    the lock the three share)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = FastHistogram(*DB_QUERIES, lock=self._lock)
        self.time = FastHistogram(*DB_TIME, lock=self._lock)
        self._pending: deque[tuple[str, int, float]] = deque()

    def observe(self, route: str, count: int, seconds: float) -> None:
        """Record one request's statement count and database seconds under ``route``."""
        pending = self._pending
        pending.append((route, count, seconds))
        if len(pending) >= FOLD_BATCH:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """``FastHistogram._fold`` for both histograms at once (the lock is held)."""
        pop = self._pending.popleft
        count, time_ = self.count, self.time
        counts, times = count._series, time_._series
        count_bounds, time_bounds = count._bounds, time_._bounds
        while True:
            try:
                route, statements, seconds = pop()
            except IndexError:
                return
            key = (route,)
            series = counts.get(key)
            if series is None:  # the two are made together
                series = counts[key] = [0.0] * count._width
                times[key] = [0.0] * time_._width
            series[bisect_left(count_bounds, statements)] += 1
            series[-1] += statements
            series = times[key]
            series[bisect_left(time_bounds, seconds)] += 1
            series[-1] += seconds

    def describe(self) -> list[Metric]:
        return [*self.count.describe(), *self.time.describe()]

    def collect(self) -> list[Metric]:
        with self._lock:  # both from the same moment: a scrape's counts agree
            self._fold()
            count, time_ = self.count._snapshot(), self.time._snapshot()
        return [self.count._family(count), self.time._family(time_)]


class _SharedHistogram:
    """``FastHistogram``'s interface on prometheus-client's histogram, for multiprocess mode."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.histogram = Histogram(
            name, documentation, labelnames, buckets=buckets, registry=registry
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.histogram.labels(*key)
        child.observe(value)

    def exemplar(self, key: tuple[str, ...], value: float, labels: dict[str, str]) -> None:
        """Exemplars cannot live in prometheus-client's multiprocess files: dropped."""


class _SharedQueries:
    """``QueryHistograms``' interface on prometheus-client's histograms (multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.count = _SharedHistogram(*DB_QUERIES, registry)
        self.time = _SharedHistogram(*DB_TIME, registry)

    def observe(self, route: str, count: int, seconds: float) -> None:
        key = (route,)
        self.count.observe(key, count)
        self.time.observe(key, seconds)


class _SharedStore(_SharedHistogram):
    """``RequestStore``'s interface on prometheus-client's metrics, for multiprocess mode."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        super().__init__(DURATION, _DURATION_HELP, _LABELS, buckets, registry)
        self.active = Gauge(
            ACTIVE,
            _ACTIVE_HELP,
            ("http_request_method",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._gauges: dict[str, Any] = {}

    def starter(self, method: str) -> Callable[[], object]:
        gauge = self._gauges.get(method)
        if gauge is None:
            gauge = self._gauges[method] = self.active.labels(method)
        return gauge.inc

    def record(self, key: tuple[str, str, str, str], seconds: float) -> None:
        self.observe(key, seconds)
        self._gauges[key[0]].dec()


class RequestMetrics:
    """The guard's metric families in one registry."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.registry = registry
        self.buckets = buckets
        self._collectors: list[Any] = []
        self.store: RequestStore | _SharedStore
        #: Statements and database time per request (one ``observe`` feeds both).
        self.queries: QueryHistograms | _SharedQueries
        if multiprocess_dir():
            self.store = _SharedStore(registry, buckets)
            self.queries = _SharedQueries(registry)
            self._collectors += [
                self.store.histogram,
                self.store.active,
                self.queries.count.histogram,
                self.queries.time.histogram,
            ]
        else:
            self.store = RequestStore(buckets)
            self.queries = QueryHistograms()
            for collector in (self.store, self.queries):
                registry.register(collector)
                self._collectors.append(collector)
        self.findings = Counter(
            FINDINGS,
            "Query findings (n_plus_one, duplicate_query, chatty_request, slow_query) by route.",
            ("http_route", "kind"),
            registry=registry,
        )
        self._collectors.append(self.findings)
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
        self.route_budget = Gauge(
            ROUTE_BUDGET,
            "The p95 latency budget applied to each route, seconds (route_class api, page or "
            "custom).",
            ("http_route", "route_class"),
            registry=registry,
            multiprocess_mode="max",
        )
        self.route_budget_breached = Gauge(
            ROUTE_BUDGET_BREACHED,
            "1 while a route's in-process rolling p95 is over its budget, else 0.",
            ("http_route",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._collectors += [
            self.build_info,
            self.internal_errors,
            self.route_budget,
            self.route_budget_breached,
        ]
        self._error_types: set[str] = set()
        self._error_types_lock = threading.Lock()
        #: The callable that counts one request of a (normalised) method as in flight.
        self.starter = self.store.starter

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
        if error_type:
            error_type = self.bound_error_type(error_type)
        self.store.record((method, route, status, error_type), seconds)

    def bound_error_type(self, error_type: str) -> str:
        """``error_type`` itself, or ``_OTHER`` once ``MAX_ERROR_TYPES`` are known."""
        if error_type in self._error_types:
            return error_type
        with self._error_types_lock:  # (new ones are rare; the cap holds across threads)
            if error_type not in self._error_types:
                if len(self._error_types) >= MAX_ERROR_TYPES:
                    return "_OTHER"
                self._error_types.add(error_type)
        return error_type

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
