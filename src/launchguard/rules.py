"""Prometheus recording and alerting rules, generated from the guard's own budgets.

Usage::

    launchguard rules --job portal --output launchguard.rules.yml
    promtool check rules launchguard.rules.yml

or from Python::

    from launchguard._config import Config
    from launchguard.rules import build_rules, to_yaml

    text = to_yaml(build_rules(Config.build({"service": "portal"})))

What the file holds (explained alert by alert in ``docs/alerts.md``):

- recording rules: request rate, 5xx ratio and, per route class (``api``, ``page``), the share
  of requests slower than the class budget, over 5m, 30m, 1h, 2h, 6h, 1d and 3d;
- multiwindow, multi-burn-rate alerts (Google SRE workbook) on the availability SLO and on the
  latency SLO of each route class: 14.4x over 1h and 5m, 6x over 6h and 30m page; 3x over 1d and
  2h, 1x over 3d and 6h open a ticket;
- per route: p95 over the route's budget, p95 over the slow-request threshold, the guard's own
  budget verdict, N+1 queries;
- per service: a failing health check, a target down or missing, internal errors of the guard.

The functions are pure: they read a :class:`~launchguard._config.Config` and their arguments and
return data; nothing is registered or read from the environment.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

from ._config import Config
from .routes import OVERFLOW

__all__ = [
    "SRE_WORKBOOK",
    "BurnWindow",
    "budget_warnings",
    "build_rules",
    "promql_string",
    "rules_yaml",
    "to_yaml",
]

DURATION = "http_server_request_duration_seconds"
BUDGET = "launchguard_route_budget_seconds"
BREACHED = "launchguard_route_budget_breached"
FINDINGS = "launchguard_query_findings_total"
HEALTH = "launchguard_health_check_status"
INTERNAL_ERRORS = "launchguard_internal_errors_total"


@dataclass(frozen=True)
class BurnWindow:
    """One burn-rate alert: the budget burns ``burn_rate`` times too fast over both windows."""

    severity: str
    burn_rate: float
    long: str
    short: str
    for_: str


#: The Google SRE workbook's burn rates and windows for a 30-day SLO (chapter "Alerting on
#: SLOs"); the ``for`` durations are ours, a fraction of each short window.
SRE_WORKBOOK: tuple[BurnWindow, ...] = (
    BurnWindow("page", 14.4, "1h", "5m", "2m"),
    BurnWindow("page", 6.0, "6h", "30m", "15m"),
    BurnWindow("ticket", 3.0, "1d", "2h", "1h"),
    BurnWindow("ticket", 1.0, "3d", "6h", "3h"),
)

#: The SLO period the burn rates are relative to, in days.
SLO_PERIOD_DAYS = 30

_DURATION_RE = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")


def promql_string(value: str) -> str:
    """``value`` as a PromQL string literal (double-quoted, Go escapes)."""
    return json.dumps(value, ensure_ascii=False)


def _duration(name: str, value: str, *, zero: bool = False) -> str:
    if (
        not value
        or not _DURATION_RE.fullmatch(value)
        or (not zero and not re.search("[1-9]", value))
    ):
        raise ValueError(
            f"{name}={value!r}: expected a Prometheus duration such as '5m' or '1h30m'"
        )
    return value


def _ratio(name: str, value: float) -> float:
    if not (0.0 < value < 1.0):
        raise ValueError(f"{name}={value!r}: expected a fraction between 0 and 1, such as 0.999")
    return value


def _number(value: float) -> str:
    """A float as PromQL and label text: ``14.4``, ``6``, ``0.999``."""
    return f"{value:g}" if value == round(value, 6) else repr(value)


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


_OPERATORS = {"": "=", "re": "=~"}


def _selector(metric: str, **labels: str) -> str:
    """``metric{a="x",b=~"y"}``: a key ending in ``__re`` is a regex match."""
    parts = []
    for key, text in labels.items():
        name, _, op = key.partition("__")
        parts.append(f"{name}{_OPERATORS[op]}{promql_string(text)}")
    return f"{metric}{{{','.join(parts)}}}"


def budget_warnings(config: Config) -> list[str]:
    """Budgets that are not a bucket bound, so their latency SLO cannot be measured exactly."""
    buckets = config.histogram_buckets
    budgets = [("api_budget", config.api_budget), ("page_budget", config.page_budget)]
    budgets += [
        (f"route_budgets[{route!r}]", s) for route, s in getattr(config, "route_budgets", ())
    ]
    return [
        f"{name}={value:g} s is not a histogram bucket bound ({', '.join(map(str, buckets))}); "
        f"the latency SLO rules of its route class are left out"
        for name, value in budgets
        if value not in buckets
    ]


def build_rules(
    config: Config,
    *,
    job: str | None = None,
    availability_slo: float = 0.999,
    latency_slo: float = 0.99,
    burn_windows: Sequence[BurnWindow] = SRE_WORKBOOK,
    latency_window: str | None = None,
    latency_for: str = "10m",
    min_requests: int | None = None,
    findings_window: str = "15m",
    health_for: str = "5m",
    down_for: str = "2m",
    missing_for: str = "10m",
    runbook_url: str = "",
) -> dict[str, Any]:
    """The rules file for the service ``config`` describes, as data (see :func:`to_yaml`).

    ``job`` is the Prometheus job label of the scraped app (default: the service name).
    ``availability_slo`` is the target share of requests without a 5xx, ``latency_slo`` the
    target share of requests within their route class's budget. ``burn_windows``,
    ``latency_window`` and the ``*_for`` durations set how fast alerts react (tests shorten
    them). A route's p95 alerts need at least ``min_requests`` requests in ``latency_window``,
    so a quiet route stays silent; both default to the guard's own ``budget_min_samples`` and
    ``budget_window`` (20 requests in 5 minutes). With ``runbook_url`` (a page such as
    ``docs/alerts.md`` on your git host) every alert gets a ``runbook_url`` annotation pointing
    at its section.
    """
    job = config.service if job is None else job
    if latency_window is None:
        seconds = int(getattr(config, "budget_window", 300))
        latency_window = f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    if min_requests is None:
        min_requests = int(getattr(config, "budget_min_samples", 20))
    if not job or "`" in job or "\n" in job:
        raise ValueError(f"job={job!r}: expected a Prometheus job name")
    _ratio("availability_slo", availability_slo)
    _ratio("latency_slo", latency_slo)
    if min_requests < 0:
        raise ValueError(f"min_requests={min_requests!r}: expected a whole number >= 0")
    if not burn_windows:
        raise ValueError("burn_windows: expected at least one window")
    for window in burn_windows:
        if window.severity not in ("page", "ticket"):
            raise ValueError(f"{window}: severity must be 'page' or 'ticket'")
        if not (window.burn_rate > 0 and math.isfinite(window.burn_rate)):
            raise ValueError(f"{window}: burn_rate must be a positive number")
        _duration("long window", window.long)
        _duration("short window", window.short)
        _duration("for", window.for_, zero=True)
    _duration("latency_window", latency_window)
    _duration("findings_window", findings_window)
    for name, value in (
        ("latency_for", latency_for),
        ("health_for", health_for),
        ("down_for", down_for),
        ("missing_for", missing_for),
    ):
        _duration(name, value, zero=True)
    return _Builder(
        config,
        job=job,
        availability_slo=availability_slo,
        latency_slo=latency_slo,
        burn_windows=tuple(burn_windows),
        latency_window=latency_window,
        latency_for=latency_for,
        min_requests=min_requests,
        findings_window=findings_window,
        health_for=health_for,
        down_for=down_for,
        missing_for=missing_for,
        runbook_url=runbook_url,
    ).rules()


def rules_yaml(config: Config, **options: Any) -> str:
    """:func:`build_rules` as the YAML text Prometheus loads, with a header comment."""
    rules = build_rules(config, **options)
    job = options.get("job") or config.service
    header = [
        f"Prometheus rules for job {job!r}, generated by `launchguard rules` from the budgets",
        f"api_budget={config.api_budget:g}s page_budget={config.page_budget:g}s "
        f"slow_request={config.slow_request:g}s. Check: promtool check rules <this file>",
        *("WARNING: " + text for text in budget_warnings(config)),
    ]
    return to_yaml(rules, comment=header)


class _Builder:
    def __init__(
        self,
        config: Config,
        *,
        job: str,
        availability_slo: float,
        latency_slo: float,
        burn_windows: tuple[BurnWindow, ...],
        latency_window: str,
        latency_for: str,
        min_requests: int,
        findings_window: str,
        health_for: str,
        down_for: str,
        missing_for: str,
        runbook_url: str,
    ) -> None:
        self.config = config
        self.job = job
        self.availability_slo = availability_slo
        self.latency_slo = latency_slo
        self.burn_windows = burn_windows
        self.latency_window = latency_window
        self.latency_for = latency_for
        self.min_requests = min_requests
        self.findings_window = findings_window
        self.health_for = health_for
        self.down_for = down_for
        self.missing_for = missing_for
        self.runbook_url = runbook_url
        buckets = config.histogram_buckets
        custom = sorted({seconds for _, seconds in getattr(config, "route_budgets", ())})
        #: (route class, its budgets) for each class whose budgets are all bucket bounds.
        self.classes: list[tuple[str, tuple[float, ...]]] = [
            (name, budgets)
            for name, budgets in (
                ("api", (config.api_budget,)),
                ("page", (config.page_budget,)),
                ("custom", tuple(custom)),
            )
            if budgets and all(budget in buckets for budget in budgets)
        ]
        windows: list[str] = []
        for window in burn_windows:
            windows += [window.short, window.long]
        self.windows = sorted(set(windows), key=_seconds)

    # --- selectors ----------------------------------------------------------------------------

    def sel(self, metric: str, **labels: str) -> str:
        return _selector(metric, job=self.job, **labels)

    def routed(self, metric: str, **labels: str) -> str:
        """A selector of ``metric`` without the unmatched and overflow routes."""
        parts = [f"job={promql_string(self.job)}"]
        excluded = dict.fromkeys((self.config.unmatched_route, OVERFLOW))
        parts += [f"http_route!={promql_string(route)}" for route in excluded]
        parts += [f"{key}={promql_string(text)}" for key, text in labels.items()]
        return f"{metric}{{{','.join(parts)}}}"

    # --- rules --------------------------------------------------------------------------------

    def rules(self) -> dict[str, Any]:
        base = f"launchguard-{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.job)}"
        return {
            "groups": [
                {"name": f"{base}-recording", "rules": self.recording()},
                {"name": f"{base}-slo", "rules": self.slo_alerts()},
                {"name": f"{base}-routes", "rules": self.route_alerts()},
                {"name": f"{base}-service", "rules": self.service_alerts()},
            ]
        }

    def recording(self) -> list[dict[str, Any]]:
        count = f"{DURATION}_count"
        rules: list[dict[str, Any]] = []
        for window in self.windows:
            total = f"sum by (job) (rate({self.sel(count)}[{window}]))"
            errors = (
                f"sum by (job) (rate({self.sel(count, http_response_status_code__re='5..')}"
                f"[{window}]))"
            )
            rules.append({"record": f"launchguard:http_requests:rate{window}", "expr": total})
            rules.append(
                {
                    "record": f"launchguard:http_errors:ratio_rate{window}",
                    # "or 0 * total": a service with traffic and no 5xx series yet records 0.
                    "expr": f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n{total}",
                }
            )
        for route_class, budgets in self.classes:
            in_class = f"on (http_route) {self.sel(BUDGET, route_class=route_class)}"
            for window in self.windows:
                total = f"rate({self.routed(count)}[{window}]) and {in_class}"
                rules.append(
                    {
                        "record": f"launchguard:latency_errors:ratio_rate{window}",
                        "expr": (
                            f"1 - (\n  sum by (job) ({self.fast(route_class, budgets, window)})\n"
                            f"  /\n  sum by (job) ({total})\n)"
                        ),
                        "labels": {"route_class": route_class},
                    }
                )
        return rules

    def fast(self, route_class: str, budgets: tuple[float, ...], window: str) -> str:
        """Per series, the rate of requests of ``route_class`` routes within their budget.

        A custom route's budget is its own: its ``le`` bucket is picked by the value of its
        budget gauge, one budget value at a time.
        """
        parts = []
        for budget in budgets:
            le = floatToGoString(budget)  # type: ignore[no-untyped-call]
            gauge = self.sel(BUDGET, route_class=route_class)
            if route_class == "custom":
                gauge = f"({gauge} == {budget!r})"
            bucket = self.routed(f"{DURATION}_bucket", le=le)
            parts.append(f"rate({bucket}[{window}]) and on (http_route) {gauge}")
        if len(parts) == 1:
            return parts[0]
        return " or ".join(f"({part})" for part in parts)

    def slo_alerts(self) -> list[dict[str, Any]]:
        rules = []
        count = f"{DURATION}_count"
        for window in self.burn_windows:
            threshold = f"({_number(window.burn_rate)} * (1 - {_number(self.availability_slo)}))"
            long = self.sel(f"launchguard:http_errors:ratio_rate{window.long}")
            short = self.sel(f"launchguard:http_errors:ratio_rate{window.short}")
            worst = (
                f"sort_desc(topk(3, sum by (http_route) (rate("
                f"{self.sel(count, http_response_status_code__re='5..')}[{window.short}])) > 0))"
            )
            days = SLO_PERIOD_DAYS / window.burn_rate
            rules.append(
                self.alert(
                    "LaunchguardAvailabilityBurnRate",
                    expr=f"{long} > {threshold}\nand\n{short} > {threshold}",
                    for_=window.for_,
                    severity=window.severity,
                    labels=self.window_labels(window, "availability"),
                    summary=(
                        f"{{{{ $labels.job }}}} is spending its "
                        f"{_percent(self.availability_slo)} availability error budget "
                        f"{_number(window.burn_rate)}x too fast"
                    ),
                    description=(
                        f"{{{{ $value | humanizePercentage }}}} of requests to "
                        f"{{{{ $labels.job }}}} failed with a 5xx over the last {window.long} "
                        f"(and over {window.short}); at this rate the {SLO_PERIOD_DAYS}-day "
                        f"budget lasts {days:.3g} days. Routes with the most 5xx over "
                        f"{window.short}: {_routes_of(worst)}."
                    ),
                    runbook=(
                        "Open the dashboard's error-ratio panel and the access log lines with "
                        "status >= 500 (logger launchguard.access, field error_type) for those "
                        "routes; roll back the last release if it started with it."
                    ),
                )
            )
        rules.extend(
            self.latency_alert(route_class, budgets, window)
            for route_class, budgets in self.classes
            for window in self.burn_windows
        )
        return rules

    def latency_alert(
        self, route_class: str, budgets: tuple[float, ...], window: BurnWindow
    ) -> dict[str, Any]:
        threshold = f"({_number(window.burn_rate)} * (1 - {_number(self.latency_slo)}))"
        long = self.sel(
            f"launchguard:latency_errors:ratio_rate{window.long}", route_class=route_class
        )
        short = self.sel(
            f"launchguard:latency_errors:ratio_rate{window.short}", route_class=route_class
        )
        total = self.routed(f"{DURATION}_count")
        fast = self.fast(route_class, budgets, window.short)
        slowest = (
            f"sort_desc(topk(3, (sum by (http_route) (rate({total}[{window.short}])) - "
            f"sum by (http_route) ({fast})) > 0))"
        )
        budget = f"{_number(budgets[0])} s budget" if len(budgets) == 1 else "own budgets"
        days = SLO_PERIOD_DAYS / window.burn_rate
        return self.alert(
            "LaunchguardLatencyBurnRate",
            expr=f"{long} > {threshold}\nand\n{short} > {threshold}",
            for_=window.for_,
            severity=window.severity,
            labels={**self.window_labels(window, "latency"), "route_class": route_class},
            summary=(
                f"{{{{ $labels.job }}}} {route_class} routes are spending their "
                f"{_percent(self.latency_slo)} latency error budget "
                f"{_number(window.burn_rate)}x too fast"
            ),
            description=(
                f"{{{{ $value | humanizePercentage }}}} of requests to {{{{ $labels.job }}}} "
                f"{route_class} routes took longer than their {budget} over "
                f"the last {window.long} (and over {window.short}); at this rate the "
                f"{SLO_PERIOD_DAYS}-day budget lasts {days:.3g} days. Routes with the most slow "
                f"requests over {window.short}: {_routes_of(slowest)}."
            ),
            runbook=(
                "Open the dashboard's p95-per-route panel; for each route named, read its slow "
                "access log lines (duration_ms, db_queries, db_ms) and its "
                "LaunchguardRouteOverBudget or LaunchguardNPlusOneQueries alerts."
            ),
        )

    def window_labels(self, window: BurnWindow, slo: str) -> dict[str, str]:
        return {
            "slo": slo,
            "burn_rate": _number(window.burn_rate),
            "long_window": window.long,
            "short_window": window.short,
        }

    def route_alerts(self) -> list[dict[str, Any]]:
        window = self.latency_window
        bucket = self.routed(f"{DURATION}_bucket")
        p95 = f"histogram_quantile(0.95, sum by (job, http_route, le) (rate({bucket}[{window}])))"
        busy = (
            f"sum by (job, http_route) (increase({self.routed(f'{DURATION}_count')}[{window}])) "
            f">= {self.min_requests}"
        )
        budget = f"topk by (job, http_route) (1, {self.sel(BUDGET)})"
        budget_of_route = (
            '{{ with query (printf "max(' + BUDGET + '{job=%q,http_route=%q})" $labels.job '
            "$labels.http_route) }}{{ . | first | value | humanizeDuration }}{{ end }}"
        )
        findings = self.sel(FINDINGS, kind="n_plus_one")
        slow = _number(self.config.slow_request)
        fw = self.findings_window
        return [
            self.alert(
                "LaunchguardRouteOverBudget",
                expr=(
                    f"(\n  {p95}\n  > on (job, http_route) group_left (route_class)\n"
                    f"  {budget}\n)\nand on (job, http_route)\n{busy}"
                ),
                for_=self.latency_for,
                severity="ticket",
                summary="p95 latency of {{ $labels.http_route }} is over its budget",
                description=(
                    "p95 latency of {{ $labels.http_route }} ({{ $labels.route_class }} route of "
                    "{{ $labels.job }}) has been over its " + budget_of_route + " budget for "
                    f"{self.latency_for}: {{{{ $value | humanizeDuration }}}} over the last "
                    f"{window}."
                ),
                runbook=(
                    "Read this route's slow access log lines (duration_ms, db_queries, db_ms): "
                    "many queries point to an N+1, a long db_ms to a missing index, neither to "
                    "app code or an outside call."
                ),
            ),
            self.alert(
                "LaunchguardRouteSlow",
                expr=f"{p95} > {slow}\nand on (job, http_route)\n{busy}",
                for_=self.latency_for,
                severity="ticket",
                summary=(
                    f"p95 latency of {{{{ $labels.http_route }}}} is over "
                    f"{_number(self.config.slow_request)} s"
                ),
                description=(
                    f"p95 latency of {{{{ $labels.http_route }}}} ({{{{ $labels.job }}}}) has "
                    f"been over the slow-request threshold of "
                    f"{_number(self.config.slow_request)} s for {self.latency_for}: "
                    f"{{{{ $value | humanizeDuration }}}} over the last {window}. A route "
                    f"regularly this slow is a launch blocker."
                ),
                runbook=(
                    "As for LaunchguardRouteOverBudget; if the route is slow by design (an "
                    "export, a report), give it its own budget or move the work to a job."
                ),
            ),
            self.alert(
                "LaunchguardRouteBudgetBreached",
                expr=f"max by (job, http_route) ({self.routed(BREACHED)}) == 1",
                for_=self.latency_for,
                severity="ticket",
                summary="{{ $labels.http_route }} is over its latency budget (launchguard)",
                description=(
                    "launchguard reports that {{ $labels.http_route }} ({{ $labels.job }}) has "
                    f"been over its p95 latency budget for {self.latency_for}."
                ),
                runbook="As for LaunchguardRouteOverBudget.",
            ),
            self.alert(
                "LaunchguardNPlusOneQueries",
                # A route's first finding creates its series at 1, which increase() cannot see:
                # a series that did not exist one window ago counts too.
                expr=(
                    f"sum by (job, http_route) (increase({findings}[{fw}])) > 0\nor\n"
                    f"count by (job, http_route) ({findings} unless {findings} offset {fw})"
                ),
                for_="0s",
                severity="ticket",
                summary="N+1 queries on {{ $labels.http_route }}",
                description=(
                    "{{ $labels.http_route }} ({{ $labels.job }}) issued the same SELECT once per "
                    f"row (an N+1 query pattern) in the last {fw}."
                ),
                runbook=(
                    "The warning on the launchguard.queries logger names the SQL shape and the "
                    "line of code; load the relation eagerly (selectinload, select_related, "
                    "prefetch_related) or fetch the rows with one IN query."
                ),
            ),
        ]

    def service_alerts(self) -> list[dict[str, Any]]:
        internal = self.sel(INTERNAL_ERRORS)
        fw = self.findings_window
        return [
            self.alert(
                "LaunchguardHealthCheckFailing",
                expr=f"min by (job, check) ({self.sel(HEALTH)}) == 0",
                for_=self.health_for,
                severity="page",
                summary="Health check {{ $labels.check }} of {{ $labels.job }} is failing",
                description=(
                    "The readiness check {{ $labels.check }} of {{ $labels.job }} has failed for "
                    f"{self.health_for} (on at least one instance)."
                ),
                runbook=(
                    "GET the readiness endpoint with the health token for the check's output; "
                    "check the dependency itself (database, cache, outside API)."
                ),
            ),
            self.alert(
                "LaunchguardTargetDown",
                expr=f"{self.sel('up')} == 0",
                for_=self.down_for,
                severity="page",
                summary="{{ $labels.job }} target {{ $labels.instance }} is down",
                description=(
                    "Prometheus could not scrape the metrics of {{ $labels.instance }} "
                    f"({{{{ $labels.job }}}}) for {self.down_for}."
                ),
                runbook=(
                    "Check the process is running and serving the metrics path (and that the "
                    "scrape token or allowlist matches)."
                ),
            ),
            self.alert(
                "LaunchguardTargetMissing",
                expr=f"absent({self.sel('up')})",
                for_=self.missing_for,
                severity="ticket",
                summary="No {{ $labels.job }} target is scraped",
                description=(
                    "Prometheus has no target of job {{ $labels.job }} for "
                    f"{self.missing_for}, so no other launchguard alert can fire."
                ),
                runbook="Check the scrape configuration and service discovery of the job.",
            ),
            self.alert(
                "LaunchguardInternalErrors",
                expr=(
                    f"sum by (job, component) (increase({internal}[{fw}])) > 0\nor\n"
                    f"count by (job, component) ({internal} unless {internal} offset {fw})"
                ),
                for_="0s",
                severity="ticket",
                summary="launchguard's {{ $labels.component }} failed in {{ $labels.job }}",
                description=(
                    "launchguard's {{ $labels.component }} failed in {{ $labels.job }} in the "
                    f"last {fw}; requests were not affected, but its metrics may be incomplete."
                ),
                runbook=(
                    "The launchguard logger has the traceback (logged once a minute per "
                    "component); report it upstream."
                ),
            ),
        ]

    def alert(
        self,
        name: str,
        *,
        expr: str,
        for_: str,
        severity: str,
        summary: str,
        description: str,
        runbook: str,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        annotations = {"summary": summary, "description": description, "runbook": runbook}
        if self.runbook_url:
            annotations["runbook_url"] = f"{self.runbook_url.split('#')[0]}#{name.lower()}"
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_ and re.search("[1-9]", for_):
            rule["for"] = for_
        rule["labels"] = {"severity": severity, "service": self.config.service, **(labels or {})}
        rule["annotations"] = annotations
        return rule


def _routes_of(query: str) -> str:
    """An alert template listing the ``http_route`` of each series ``query`` returns."""
    return (
        f"{{{{ range $i, $s := query `{query}` }}}}{{{{ if $i }}}}, {{{{ end }}}}"
        "{{ $s.Labels.http_route }}{{ end }}"
    )


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(
        float(number) * units[unit] for number, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration)
    )


# --- YAML ---------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_:./-]*[A-Za-z0-9_./-])?")  # no ":" last
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def to_yaml(data: Mapping[str, Any], *, comment: Sequence[str] = ()) -> str:
    """Block-style YAML for nested mappings, lists, strings, numbers, booleans and None.

    Strings are plain when nothing could misread them (``api``, ``launchguard:x:rate5m``),
    a literal block (``|-``) when they span lines, so PromQL stays readable, single-quoted when
    every character is printable, else double-quoted with escapes.
    """
    lines = [f"# {line}".rstrip() for text in comment for line in text.splitlines()]
    _emit(data, 0, lines)
    return "\n".join(lines) + "\n"


def _emit(value: Mapping[str, Any] | Sequence[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            _entry(f"{pad}{_key(key)}:", item, indent, out)
        return
    for item in value:
        if isinstance(item, (Mapping, list, tuple)) and item:
            nested: list[str] = []
            _emit(item, indent + 2, nested)
            out.append(f"{pad}- {nested[0][indent + 2 :]}")
            out.extend(nested[1:])
        else:
            _entry(f"{pad}-", item, indent, out)


def _entry(head: str, item: Any, indent: int, out: list[str]) -> None:
    if isinstance(item, (Mapping, list, tuple)):
        if not item:
            out.append(f"{head} {'{}' if isinstance(item, Mapping) else '[]'}")
            return
        out.append(head)
        _emit(item, indent + 2, out)
    elif isinstance(item, str) and _block_safe(item):
        out.append(f"{head} |-")
        pad = " " * (indent + 2)
        out.extend(f"{pad}{line}" if line else "" for line in item.split("\n"))
    else:
        out.append(f"{head} {_scalar(item)}")


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"YAML keys must be strings, not {key!r}")
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS:
        return key
    return _quote(key)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"  # YAML 1.1 floats need the dot
        return text
    if isinstance(value, str):
        if _PLAIN_VALUE.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        if value and all(_printable(ch) for ch in value):
            return "'" + value.replace("'", "''") + "'"
        return _quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML: {value!r}")


def _printable(ch: str) -> bool:
    """In YAML's printable set, and not a line break of YAML 1.1 (NEL, LS, PS) or a BOM."""
    code = ord(ch)
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code not in (0xFEFF,))
        or 0x10000 <= code <= 0x10FFFF
    ) and code not in (0x2028, 0x2029)


def _block_safe(text: str) -> bool:
    """A literal block keeps ``text`` exactly: several lines, the first one not indented."""
    return (
        "\n" in text
        and not text.endswith("\n")
        and text[:1] not in ("", " ", "\t", "\n")
        and all(_printable(ch) or ch in "\n\t" for ch in text)
        and not any(line.endswith((" ", "\t")) for line in text.split("\n"))
    )


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _printable(ch):
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError(f"cannot write a lone surrogate as YAML: {text!r}")
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
