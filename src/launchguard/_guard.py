"""The :class:`LaunchGuard` object: one configuration, shared state, two adapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._config import Config, RouteResolver, check_names
from ._internal import InternalErrors
from .admin import MetricsEndpoint
from .metrics import RequestMetrics
from .routes import RouteLabels
from .timing import RequestTimer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._types import ASGIApp, WSGIApp
    from .asgi import LaunchGuardMiddleware
    from .wsgi import LaunchGuardWSGI

__all__ = ["LaunchGuard"]


class _ErrorCounter:
    def __init__(self, metrics: RequestMetrics) -> None:
        self._metrics = metrics

    def inc(self, component: str) -> None:
        self._metrics.count_internal_error(component)


class LaunchGuard:
    """Makes a web app launch ready. Create one per app, then wrap the app with it.

    Every option is keyword-only and may also come from a ``LAUNCHGUARD_<OPTION>`` environment
    variable (an explicit argument wins). Invalid values raise :class:`ConfigError` here, never
    per request. See the README for the table of options.

    >>> guard = LaunchGuard(service="portal", release="2026.11.28")
    >>> app = guard.asgi(app)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        service: str | None = None,
        version: str | None = None,
        release: str | None = None,
        metrics_path: str | None = None,
        metrics_token: str | None = None,
        metrics_allow: Sequence[str] | None = None,
        api_budget: float | None = None,
        page_budget: float | None = None,
        slow_request: float | None = None,
        buckets: Sequence[float] | None = None,
        exclude_paths: Sequence[str] | None = None,
        max_routes: int | None = None,
        unmatched_route: str | None = None,
        route_resolver: RouteResolver | None = None,
        registry: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        options = {k: v for k, v in locals().items() if k not in ("self", "environ")}
        self.config = config = Config.build(options, environ)
        self.metrics = RequestMetrics.for_registry(config.registry, config.histogram_buckets)
        self.metrics.set_build_info(config.service, config.version, config.release)
        self.errors = InternalErrors(_ErrorCounter(self.metrics))
        self.route_labels = RouteLabels(
            max_routes=config.max_routes, unmatched=config.unmatched_route
        )
        self.timer = RequestTimer(self.metrics, self.errors, config.unmatched_route)
        self.metrics_endpoint = (
            MetricsEndpoint(config, self.metrics.exposition) if config.metrics_path else None
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> LaunchGuard:
        """A guard from a settings mapping (Django's ``LAUNCHGUARD`` dict, say)."""
        options = dict(settings or {})
        check_names(options)
        return cls(**options)

    def asgi(self, app: ASGIApp) -> LaunchGuardMiddleware:
        """Wrap an ASGI app."""
        from .asgi import LaunchGuardMiddleware

        return LaunchGuardMiddleware(app, guard=self)

    def wsgi(self, app: WSGIApp) -> LaunchGuardWSGI:
        """Wrap a WSGI app."""
        from .wsgi import LaunchGuardWSGI

        return LaunchGuardWSGI(app, guard=self)

    def __repr__(self) -> str:
        return f"LaunchGuard(service={self.config.service!r})"
