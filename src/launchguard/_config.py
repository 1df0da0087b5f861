"""The guard's configuration: typed options, ``LAUNCHGUARD_*`` environment variables, validation.

Precedence: an explicit keyword argument, then the environment variable, then the default.
Every value is validated once, at construction; a bad one raises :class:`ConfigError` naming the
option (or the variable) and the value.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

__all__ = ["OTEL_BUCKETS", "Config", "ConfigError", "RouteResolver"]

#: OpenTelemetry's advisory buckets for ``http.server.request.duration`` (seconds).
OTEL_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

RouteResolver = Callable[[Mapping[str, Any]], "str | None"]


class ConfigError(ValueError):
    """A configuration value is invalid; raised at construction, never per request."""


def _opt(default: Any, doc: str, *, env: bool = True) -> Any:
    return field(default=default, metadata={"doc": doc, "env": env})


@dataclass(frozen=True, kw_only=True)
class Config:
    """Validated options. Build it with :meth:`build`; :class:`LaunchGuard` does."""

    service: str = _opt("app", "Service name, shown in `launchguard_build_info`.")
    version: str = _opt("", "Application version, shown in `launchguard_build_info`.")
    release: str = _opt("", "Deploy identifier (git SHA, tag), shown in `launchguard_build_info`.")
    metrics_path: str = _opt("/metrics", "Path that serves the metrics; `off` disables it.")
    metrics_token: str = _opt("", "If set, `/metrics` requires `Authorization: Bearer <token>`.")
    metrics_allow: tuple[str, ...] = _opt(
        (), "Client networks (CIDR, comma-separated in the env var) allowed to scrape; empty: any."
    )
    access_log: bool = _opt(True, "Write one structured access-log line per request.")
    access_log_sample: float = _opt(
        1.0, "Fraction of fast successful requests logged (errors and slow ones always are)."
    )
    request_ids: bool = _opt(True, "Accept or make a request id, echo it, bind it to log lines.")
    request_id_header: str = _opt(
        "X-Request-ID", "Header read for an incoming request id and echoed in responses."
    )
    trusted_proxies: tuple[str, ...] = _opt(
        (), "Proxy networks (CIDR) whose X-Forwarded-For gives the logged `client_ip`."
    )
    redact_patterns: tuple[tuple[str, str], ...] = _opt(
        (), "Extra secret patterns to mask: (kind, regex) pairs.", env=False
    )
    redact_allowlist: tuple[str, ...] = _opt(
        (), "Regexes of values never masked (a known-safe id that looks like a key)."
    )
    health_path: str = _opt("/healthz", "Liveness endpoint (never checks dependencies); `off`.")
    ready_path: str = _opt("/readyz", "Readiness endpoint (runs the checks); `off` disables it.")
    startup_path: str = _opt("/startupz", "Startup endpoint (ready once, then always); `off`.")
    checks: tuple[Any, ...] = _opt(
        (), "Readiness checks (`launchguard.health.postgres_check(...)`, ...).", env=False
    )
    health_details: str = _opt(
        "never", "Who sees per-check details: `never`, `token` (with health_token), `always`."
    )
    health_token: str = _opt("", "Bearer token that reveals check details (`details=token`).")
    health_cache_ttl: float = _opt(
        2.0, "Seconds a readiness result is reused (one evaluation per interval)."
    )
    drain_delay: float = _opt(
        0.0, "On SIGTERM, fail readiness and wait this long before the server stops accepting."
    )
    api_budget: float = _opt(0.3, "p95 latency budget of API (JSON) routes, seconds.")
    page_budget: float = _opt(0.5, "p95 latency budget of page (HTML) routes, seconds.")
    slow_request: float = _opt(1.0, "A request slower than this many seconds is a slow request.")
    route_budgets: tuple[tuple[str, float], ...] = _opt(
        (),
        "Per-route p95 budgets: {route template or glob: seconds} (env: `route=s,route=s`).",
    )
    alerts: bool = _opt(
        True, "Watch each route's rolling p95 against its budget; alert on breaches and N+1s."
    )
    alert_cooldown: float = _opt(
        900.0, "Seconds between two alerts (log line, Sentry event) for one route or finding."
    )
    budget_window: float = _opt(300.0, "Sliding window of the in-process p95, seconds.")
    budget_min_samples: int = _opt(
        20, "Requests a route needs in the window before its p95 is judged."
    )
    buckets: tuple[float, ...] = _opt(
        (), "Histogram bucket bounds in seconds; default: OpenTelemetry's plus every budget."
    )
    exclude_paths: tuple[str, ...] = _opt(
        (), "Exact paths never recorded (the guard's own endpoints never are)."
    )
    max_routes: int = _opt(
        1000, "Distinct route labels kept; beyond it requests count under `__overflow__`."
    )
    unmatched_route: str = _opt(
        "__unmatched__", "Route label of requests no route matched (404s, scanners, redirects)."
    )
    queries: bool = _opt(True, "Count and fingerprint the database statements of each request.")
    n_plus_one_threshold: int = _opt(
        5, "A SELECT shape repeated this often from one line of code is an N+1 finding."
    )
    n_plus_one_writes: bool = _opt(False, "Count INSERT/UPDATE/DELETE toward N+1 findings too.")
    query_budget: int = _opt(20, "More statements than this in one request: chatty_request.")
    route_query_budgets: tuple[tuple[str, int], ...] = _opt(
        (), "Per-route query budgets: {route template: budget} (env: `route=n,route=n`)."
    )
    slow_query: float = _opt(0.5, "One statement slower than this many seconds: slow_query.")
    server_timing: bool = _opt(
        False, "Add a `Server-Timing: db;dur=..` header with the request's DB time and count."
    )
    warn_findings: bool = _opt(
        False, "Also raise findings as Python warnings (`NPlusOneWarning`...), for test suites."
    )
    findings_log_interval: float = _opt(
        300.0, "Log a given finding (route, kind, SQL shape, call site) once per this many seconds."
    )
    header_lint: bool = _opt(
        True, "Lint every response's cache and security headers (one lookup on a steady route)."
    )
    cdn: str = _opt(
        "cloudflare", "Shared cache in front of the app, for CDN rules: cloudflare, generic, none."
    )
    lint_ignore: tuple[str, ...] = _opt((), "Header-lint rule ids never reported.")
    route_resolver: RouteResolver | None = _opt(
        None,
        "Callable(scope or environ) -> route template, for apps the guard cannot read.",
        env=False,
    )
    registry: Any = _opt(
        None, "prometheus-client `CollectorRegistry`; default: the global `REGISTRY`.", env=False
    )

    @classmethod
    def build(cls, explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
        """Merge explicit options, ``LAUNCHGUARD_*`` variables and defaults, then validate."""
        environ = os.environ if environ is None else environ
        check_names(explicit)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if explicit.get(f.name) is not None:
                values[f.name] = _coerce(f.name, explicit[f.name], f.default, source=None)
                continue
            var = env_var(f.name)
            if f.metadata["env"] and var in environ:
                values[f.name] = _coerce(f.name, environ[var], f.default, source=var)
        config = cls(**values)
        config._validate()
        return config

    def _validate(self) -> None:
        if not self.service.strip():
            _bad("service", self.service, "must not be empty")
        paths: dict[str, str] = {}
        for name in ("metrics_path", "health_path", "ready_path", "startup_path"):
            path = getattr(self, name)
            if path and not path.startswith("/"):
                _bad(name, path, "must start with '/' (or be 'off')")
            if path and path in paths:
                _bad(name, path, f"is also {paths[path]}")
            paths[path] = name
        if self.health_details not in ("never", "token", "always"):
            _bad("health_details", self.health_details, "must be never, token or always")
        if self.health_details == "token" and not self.health_token:
            _bad("health_token", "", "is needed when health_details is 'token'")
        if not (self.health_cache_ttl >= 0 and math.isfinite(self.health_cache_ttl)):
            _bad("health_cache_ttl", self.health_cache_ttl, "must be >= 0 seconds")
        if not (self.drain_delay >= 0 and math.isfinite(self.drain_delay)):
            _bad("drain_delay", self.drain_delay, "must be >= 0 seconds")
        for name in ("api_budget", "page_budget", "slow_request"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                _bad(name, value, "must be a positive number of seconds")
        for route, seconds in self.route_budgets:
            if not (isinstance(route, str) and route and seconds > 0 and math.isfinite(seconds)):
                _bad("route_budgets", (route, seconds), "needs {route: positive seconds}")
        if not (self.alert_cooldown >= 0 and math.isfinite(self.alert_cooldown)):
            _bad("alert_cooldown", self.alert_cooldown, "must be >= 0 seconds")
        if not (self.budget_window >= 10 and math.isfinite(self.budget_window)):
            _bad("budget_window", self.budget_window, "must be at least 10 seconds")
        if self.budget_min_samples < 1:
            _bad("budget_min_samples", self.budget_min_samples, "must be at least 1")
        if self.buckets:
            if any(not (b > 0 and math.isfinite(b)) for b in self.buckets):
                _bad("buckets", self.buckets, "bounds must be positive finite seconds")
            if list(self.buckets) != sorted(set(self.buckets)):
                _bad("buckets", self.buckets, "bounds must be strictly increasing")
        if self.max_routes < 1:
            _bad("max_routes", self.max_routes, "must be at least 1")
        for name in ("n_plus_one_threshold", "query_budget"):
            if getattr(self, name) < 1:
                _bad(name, getattr(self, name), "must be at least 1")
        for name in ("slow_query", "findings_log_interval"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                _bad(name, value, "must be a positive number of seconds")
        for route, budget in self.route_query_budgets:
            if not isinstance(route, str) or not isinstance(budget, int) or budget < 1:
                _bad("route_query_budgets", (route, budget), "needs {route: whole number >= 1}")
        for name in ("metrics_allow", "trusted_proxies"):
            for cidr in getattr(self, name):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    _bad(name, cidr, "is not an IP network such as '10.0.0.0/8'")
        if not 0.0 <= self.access_log_sample <= 1.0:
            _bad("access_log_sample", self.access_log_sample, "must be between 0 and 1")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.request_id_header):
            _bad("request_id_header", self.request_id_header, "must be a header name")
        for path in self.exclude_paths:
            if not path.startswith("/"):
                _bad("exclude_paths", path, "each path must start with '/'")
        if self.cdn not in ("cloudflare", "generic", "none"):
            _bad("cdn", self.cdn, "must be cloudflare, generic or none")
        from .lint import RULES

        for rule in self.lint_ignore:
            if rule not in RULES:
                _bad("lint_ignore", rule, f"is not a rule id; known: {', '.join(sorted(RULES))}")
        if self.route_resolver is not None and not callable(self.route_resolver):
            _bad("route_resolver", self.route_resolver, "must be callable")

    @property
    def histogram_buckets(self) -> tuple[float, ...]:
        """The buckets in use: the configured ones, or OTel's plus every budget."""
        if self.buckets:
            return self.buckets
        budgets = {self.api_budget, self.page_budget, self.slow_request}
        budgets.update(seconds for _, seconds in self.route_budgets)
        return tuple(sorted(set(OTEL_BUCKETS) | budgets))


def check_names(options: Mapping[str, Any]) -> None:
    """Fail with the list of valid options if ``options`` has an unknown name."""
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown launchguard option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(sorted(known))}"
        )


def env_var(option: str) -> str:
    """The environment variable that sets ``option``."""
    return "LAUNCHGUARD_" + option.upper()


def options_table() -> list[tuple[str, str, str, str]]:
    """(option, environment variable, default, description) for every option, for the docs."""
    rows = []
    for f in fields(Config):
        default = "" if f.default is MISSING else repr(f.default)
        var = env_var(f.name) if f.metadata["env"] else "-"
        rows.append((f.name, var, default, f.metadata["doc"]))
    return rows


def _bad(option: str, value: object, problem: str) -> None:
    raise ConfigError(f"launchguard option {option}={value!r}: {problem}")


def _coerce(name: str, value: Any, default: Any, *, source: str | None) -> Any:
    """Turn ``value`` into the type of ``default``; ``source`` names an env var, if any."""
    where = f"environment variable {source}={value!r}" if source else f"option {name}={value!r}"
    if name.endswith("_path") and isinstance(value, str) and value.lower() in ("off", "none", ""):
        return ""
    if default is None:  # callables and objects: taken as given
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"launchguard {where}: expected true or false")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"launchguard {where}: expected a whole number")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"launchguard {where}: expected a number of seconds")
    if name == "redact_patterns":  # (kind, regex) pairs, compiled and checked by Redactor
        return tuple(tuple(pair) for pair in value)
    if name == "checks":  # Check objects, validated by Health
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"launchguard {where}: expected a list of checks")
        return tuple(value)
    if isinstance(default, tuple) and name == "route_query_budgets":
        return _budgets(where, value)
    if isinstance(default, tuple) and name == "route_budgets":
        return _route_seconds(where, value)
    if isinstance(default, tuple):
        items: list[Any]
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        else:
            raise ConfigError(f"launchguard {where}: expected a list")
        if name == "buckets":
            try:
                return tuple(float(item) for item in items)
            except (TypeError, ValueError):
                raise ConfigError(f"launchguard {where}: expected numbers of seconds") from None
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(f"launchguard {where}: expected a list of strings")
        return tuple(items)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"launchguard {where}: expected a string")
        return value
    return value  # pragma: no cover - every option has one of the types above


def _budgets(where: str, value: Any, number_type: type = int) -> tuple[tuple[str, Any], ...]:
    """``{route: n}``, pairs, or ``"route=n,route=n"`` as sorted (route, n) pairs."""
    pairs: list[tuple[Any, Any]]
    if isinstance(value, str):
        pairs = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            route, sep, number = part.rpartition("=")
            try:
                pairs.append((route.strip(), number_type(number)))
            except ValueError:
                raise ConfigError(f"launchguard {where}: expected route=number pairs") from None
            if not sep:
                raise ConfigError(f"launchguard {where}: expected route=number pairs")
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = [tuple(pair) for pair in value]
    else:
        raise ConfigError(f"launchguard {where}: expected a mapping of route to budget")
    return tuple(sorted(pairs))


def _route_seconds(where: str, value: Any) -> tuple[tuple[str, float], ...]:
    """``route_budgets`` as sorted (route, seconds) pairs."""
    try:
        pairs = [(route, seconds) for route, seconds in _budgets(where, value, float)]
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"launchguard {where}: expected a mapping of route to seconds") from None
    for _, seconds in pairs:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ConfigError(f"launchguard {where}: expected a number of seconds per route")
    return tuple((route, float(seconds)) for route, seconds in pairs)
