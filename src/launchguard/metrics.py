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
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = ["DURATION", "RequestMetrics", "exposition", "multiprocess_dir"]

DURATION = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
BUILD_INFO = "launchguard_build_info"
INTERNAL_ERRORS = "launchguard_internal_errors"

#: Most distinct ``error_type`` values kept; the rest count as ``_OTHER``.
MAX_ERROR_TYPES = 100

_LABELS = ("http_request_method", "http_route", "http_response_status_code", "error_type")
_bundles: weakref.WeakKeyDictionary[CollectorRegistry, RequestMetrics] = weakref.WeakKeyDictionary()
_bundles_lock = threading.Lock()


def multiprocess_dir() -> str | None:
    """The prometheus-client multiprocess directory, if multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"  # noqa: SIM112 - prometheus-client's legacy name
    )


class RequestMetrics:
    """The guard's metric families in one registry, with cached label children."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.registry = registry
        self.buckets = buckets
        self.duration = Histogram(
            DURATION,
            "Duration of HTTP server requests, to the last body byte.",
            _LABELS,
            buckets=buckets,
            registry=registry,
        )
        self.active = Gauge(
            ACTIVE,
            "Number of HTTP server requests in flight.",
            ("http_request_method",),
            registry=registry,
            multiprocess_mode="livesum",
        )
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
        self._observers: dict[tuple[str, str, str, str], Any] = {}
        self._active: dict[str, Any] = {}
        self._error_types: set[str] = set()

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
        for collector in (self.duration, self.active, self.build_info, self.internal_errors):
            try:
                self.registry.unregister(collector)
            except KeyError:
                pass

    def observe(
        self, method: str, route: str, status: str, error_type: str, seconds: float
    ) -> None:
        """Record one request."""
        key = (method, route, status, error_type)
        child = self._observers.get(key)
        if child is None:
            if error_type and error_type not in self._error_types:
                if len(self._error_types) >= MAX_ERROR_TYPES:
                    error_type = "_OTHER"
                    key = (method, route, status, error_type)
                else:
                    self._error_types.add(error_type)
            child = self._observers[key] = self.duration.labels(*key)
        child.observe(seconds)

    def active_child(self, method: str) -> Any:
        """The in-flight gauge child of ``method``."""
        child = self._active.get(method)
        if child is None:
            child = self._active[method] = self.active.labels(method)
        return child

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
