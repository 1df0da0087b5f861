"""The :class:`LaunchGuard` object: one configuration, shared state, two adapters."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import drain
from ._config import Config, RouteResolver, check_names
from ._internal import InternalErrors
from .access import AccessLog
from .admin import AdminResponse, MetricsEndpoint
from .budgets import BudgetWatch
from .headerlint import HeaderLinter
from .health import Check, Health
from .metrics import RequestMetrics
from .redact import Redactor, default_redactor
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
        access_log: bool | None = None,
        access_log_sample: float | None = None,
        request_ids: bool | None = None,
        request_id_header: str | None = None,
        trusted_proxies: Sequence[str] | None = None,
        redact_patterns: Sequence[tuple[str, str]] | None = None,
        redact_allowlist: Sequence[str] | None = None,
        health_path: str | None = None,
        ready_path: str | None = None,
        startup_path: str | None = None,
        checks: Sequence[Check] | None = None,
        health_details: str | None = None,
        health_token: str | None = None,
        health_cache_ttl: float | None = None,
        drain_delay: float | None = None,
        api_budget: float | None = None,
        page_budget: float | None = None,
        slow_request: float | None = None,
        route_budgets: Mapping[str, float] | None = None,
        alerts: bool | None = None,
        alert_cooldown: float | None = None,
        budget_window: float | None = None,
        budget_min_samples: int | None = None,
        buckets: Sequence[float] | None = None,
        exclude_paths: Sequence[str] | None = None,
        max_routes: int | None = None,
        unmatched_route: str | None = None,
        queries: bool | None = None,
        n_plus_one_threshold: int | None = None,
        n_plus_one_writes: bool | None = None,
        query_budget: int | None = None,
        route_query_budgets: Mapping[str, int] | None = None,
        slow_query: float | None = None,
        server_timing: bool | None = None,
        warn_findings: bool | None = None,
        findings_log_interval: float | None = None,
        header_lint: bool | None = None,
        cdn: str | None = None,
        lint_ignore: Sequence[str] | None = None,
        route_resolver: RouteResolver | None = None,
        registry: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        options = {k: v for k, v in locals().items() if k not in ("self", "environ")}
        self.config = config = Config.build(options, environ)
        self.metrics = RequestMetrics.for_registry(config.registry, config.histogram_buckets)
        self.metrics.set_build_info(config.service, config.version, config.release)
        self.errors = InternalErrors(_ErrorCounter(self.metrics))
        self.redactor = (
            Redactor(extra_patterns=config.redact_patterns, allowlist=config.redact_allowlist)
            if config.redact_patterns or config.redact_allowlist
            else default_redactor()
        )
        self.route_labels = RouteLabels(
            max_routes=config.max_routes, unmatched=config.unmatched_route
        )
        #: The header linter (``None`` with ``header_lint=False``).
        self.linter = (
            HeaderLinter(
                cdn=config.cdn,
                ignore=config.lint_ignore,
                log_interval=config.findings_log_interval,
                redactor=self.redactor,
                registry=config.registry,
                max_routes=config.max_routes + 2,
            )
            if config.header_lint
            else None
        )
        #: The in-process budget watch (``None`` with ``alerts=False``).
        self.budgets = (
            BudgetWatch(config, self.metrics, self.errors, redactor=self.redactor)
            if config.alerts
            else None
        )
        if "sentry_sdk" in sys.modules:  # tag Sentry events with their request
            try:
                from .integrations.sentry import enrich_events

                enrich_events()
            except Exception as exc:
                self.errors.record("sentry", exc)
        self.timer = RequestTimer(
            self.metrics,
            self.errors,
            config,
            AccessLog(config, self.redactor) if config.access_log else None,
            self.redactor.redact_text,
            self.linter,
            self.budgets,
        )
        self.metrics_endpoint = (
            MetricsEndpoint(config, self.metrics.exposition) if config.metrics_path else None
        )
        self.health = Health(
            checks=config.checks,
            service=config.service,
            version=config.version,
            release=config.release,
            cache_ttl=config.health_cache_ttl,
            details=config.health_details,
            token=config.health_token,
            errors=self.errors,
            registry=config.registry,
        )
        #: The guard's own endpoints: path -> "metrics", "live", "ready" or "startup".
        self.endpoints: dict[str, str] = {
            path: kind
            for path, kind in (
                (config.metrics_path if self.metrics_endpoint else "", "metrics"),
                (config.health_path, "live"),
                (config.ready_path, "ready"),
                (config.startup_path, "startup"),
            )
            if path
        }
        drain.register(self.health, config.drain_delay)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> LaunchGuard:
        """A guard from a settings mapping (Django's ``LAUNCHGUARD`` dict, say)."""
        options = dict(settings or {})
        check_names(options)
        return cls(**options)

    def findings(self) -> dict[str, Any]:
        """The header-lint report: per route, each rule hit with its count, first and last
        seen, and one example response with secrets masked (JSON-serialisable)."""
        if self.linter is None:
            return {"cdn": self.config.cdn, "routes": {}}
        return self.linter.report()

    def serve_sync(
        self,
        kind: str,
        method: str,
        *,
        accept: str,
        accept_encoding: str,
        authorization: str,
        client: str | None,
    ) -> AdminResponse:
        """The response of one of the guard's endpoints, for sync (WSGI) servers."""
        if kind == "metrics":
            return self._metrics_response(method, accept, accept_encoding, authorization, client)
        health = self.health
        probe = {"ready": health.readiness_sync, "startup": health.startup_sync}.get(
            kind, health.liveness_sync
        )
        return probe(method=method, authorization=authorization)

    async def serve(
        self,
        kind: str,
        method: str,
        *,
        accept: str,
        accept_encoding: str,
        authorization: str,
        client: str | None,
    ) -> AdminResponse:
        """The response of one of the guard's endpoints, for async (ASGI) servers."""
        if kind == "metrics":
            return self._metrics_response(method, accept, accept_encoding, authorization, client)
        health = self.health
        probe = {"ready": health.readiness, "startup": health.startup}.get(kind, health.liveness)
        return await probe(method=method, authorization=authorization)

    def _metrics_response(
        self, method: str, accept: str, accept_encoding: str, authorization: str, client: str | None
    ) -> AdminResponse:
        endpoint = self.metrics_endpoint
        if endpoint is None:  # pragma: no cover - "metrics" is only routed when it exists
            return 404, [], b""
        return endpoint.respond(
            method,
            accept=accept,
            accept_encoding=accept_encoding,
            authorization=authorization,
            client=client,
        )

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
