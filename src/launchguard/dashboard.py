"""A Grafana dashboard for the guard's metrics, generated from the same budgets as the rules.

Usage::

    launchguard dashboard --job portal --output launchguard.dashboard.json

then import the file in Grafana (Dashboards > New > Import) and pick a Prometheus data source.
From Python::

    import json
    from launchguard._config import Config
    from launchguard.dashboard import build_dashboard

    text = json.dumps(build_dashboard(Config.build({"service": "portal"})), indent=2)

Panels: p95 per route against its budget, request rate, 5xx ratio, database queries per
request (p95 and mean), database time per request, query findings by kind, header-lint
findings, health checks, the running build, in-flight requests, internal errors. Variables:
``datasource`` (any Prometheus), ``job`` and ``route`` (one, several or all).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ._config import Config
from .routes import OVERFLOW
from .rules import promql_string

__all__ = ["build_dashboard", "panel_queries"]

SCHEMA_VERSION = 39
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_D = "http_server_request_duration_seconds"


def build_dashboard(
    config: Config, *, job: str | None = None, title: str | None = None, uid: str | None = None
) -> dict[str, Any]:
    """The dashboard JSON model (``json.dumps`` it) for the service ``config`` describes.

    ``job`` is the Prometheus job label of the scraped app (default: the service name), the
    ``job`` variable's default; ``title`` and ``uid`` default to ones derived from it.
    """
    job = config.service if job is None else job
    if not job:
        raise ValueError("job: expected a Prometheus job name")
    sel = 'job="$job"'
    routes = f'{sel},http_route=~"$route"'
    routed = (
        f"{routes},http_route!={promql_string(config.unmatched_route)},"
        f"http_route!={promql_string(OVERFLOW)}"
    )
    rate = "$__rate_interval"
    budgets = [
        (config.api_budget, "api budget", "yellow"),
        (config.page_budget, "page budget", "orange"),
        (config.slow_request, "slow request", "red"),
    ]
    panels = [
        _timeseries(
            "p95 latency per route against its budget",
            (
                "95th percentile of each route's request duration (solid) and the route's p95 "
                "budget (dashed, when the guard exports it). Threshold lines: "
                + ", ".join(f"{name} {value:g} s" for value, name, _ in budgets)
                + ". Unmatched and overflow routes are left out."
            ),
            [
                _target(
                    "A",
                    f"histogram_quantile(0.95, sum by (http_route, le) "
                    f"(rate({_D}_bucket{{{routed}}}[{rate}])))",
                    "{{http_route}} p95",
                ),
                _target(
                    "B",
                    f"max by (http_route) (launchguard_route_budget_seconds{{{routed}}})",
                    "{{http_route}} budget",
                ),
            ],
            unit="s",
            grid=(0, 0, 24, 9),
            thresholds=[(value, color) for value, _, color in budgets],
            dashed_ref="B",
        ),
        _timeseries(
            "Requests per second by route",
            "Finished requests per second, by route template.",
            [
                _target(
                    "A",
                    f"sum by (http_route) (rate({_D}_count{{{routes}}}[{rate}]))",
                    "{{http_route}}",
                )
            ],
            unit="reqps",
            grid=(0, 9, 12, 8),
        ),
        _timeseries(
            "5xx ratio by route",
            "Share of each route's requests answered with a 5xx (exceptions included).",
            [
                _target(
                    "A",
                    f"(sum by (http_route) (rate({_D}_count{{{routes},"
                    f'http_response_status_code=~"5.."}}[{rate}])) or 0 * sum by (http_route) '
                    f"(rate({_D}_count{{{routes}}}[{rate}]))) / sum by (http_route) "
                    f"(rate({_D}_count{{{routes}}}[{rate}]))",
                    "{{http_route}}",
                )
            ],
            unit="percentunit",
            grid=(12, 9, 12, 8),
        ),
        _timeseries(
            "Database queries per request (p95 and mean)",
            "Statements issued per request, by route; an N+1 shows as a route far above "
            "the others.",
            [
                _target(
                    "A",
                    "histogram_quantile(0.95, sum by (http_route, le) "
                    f"(rate(launchguard_db_queries_per_request_bucket{{{routes}}}[{rate}])))",
                    "{{http_route}} p95",
                ),
                _target(
                    "B",
                    f"sum by (http_route) (rate(launchguard_db_queries_per_request_sum"
                    f"{{{routes}}}[{rate}])) / sum by (http_route) "
                    f"(rate(launchguard_db_queries_per_request_count{{{routes}}}[{rate}]))",
                    "{{http_route}} mean",
                ),
            ],
            unit="short",
            grid=(0, 17, 12, 8),
            dashed_ref="B",
        ),
        _timeseries(
            "Database time per request (p95)",
            "Time spent in database statements per request, by route.",
            [
                _target(
                    "A",
                    "histogram_quantile(0.95, sum by (http_route, le) "
                    f"(rate(launchguard_db_time_per_request_seconds_bucket{{{routes}}}[{rate}])))",
                    "{{http_route}}",
                )
            ],
            unit="s",
            grid=(12, 17, 12, 8),
        ),
        _timeseries(
            "Query findings by kind",
            "N+1 queries, duplicate queries, chatty requests and slow queries found, by kind "
            "and route. The launchguard.queries log names the SQL shape and the line of code.",
            [
                _target(
                    "A",
                    f"sum by (kind, http_route) "
                    f"(increase(launchguard_query_findings_total{{{routes}}}[{rate}]))",
                    "{{kind}} {{http_route}}",
                )
            ],
            unit="short",
            grid=(0, 25, 12, 8),
            bars=True,
        ),
        _timeseries(
            "Header-lint findings by rule",
            "Cache and security header problems found in responses, by rule and route.",
            [
                _target(
                    "A",
                    f"sum by (rule, http_route) "
                    f"(increase(launchguard_http_lint_findings_total{{{routes}}}[{rate}]))",
                    "{{rule}} {{http_route}}",
                )
            ],
            unit="short",
            grid=(12, 25, 12, 8),
            bars=True,
        ),
        _health_panel(sel, grid=(0, 33, 12, 8)),
        _build_panel(sel, grid=(12, 33, 12, 8)),
        _timeseries(
            "In-flight requests",
            "Requests being served right now, by method.",
            [
                _target(
                    "A",
                    f"sum by (http_request_method) (http_server_active_requests{{{sel}}})",
                    "{{http_request_method}}",
                )
            ],
            unit="short",
            grid=(0, 41, 12, 8),
        ),
        _timeseries(
            "launchguard internal errors",
            "Failures inside the guard, by component; requests were not affected.",
            [
                _target(
                    "A",
                    f"sum by (component) "
                    f"(increase(launchguard_internal_errors_total{{{sel}}}[{rate}]))",
                    "{{component}}",
                )
            ],
            unit="short",
            grid=(12, 41, 12, 8),
            bars=True,
        ),
    ]
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    slug = re.sub(r"[^a-z0-9-]+", "-", job.lower()).strip("-")[:30] or "app"
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": f"launchguard: request, query, header and health metrics of {job}.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["launchguard"],
        "templating": {"list": _variables(job)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title or f"launchguard: {job}",
        "uid": uid or f"launchguard-{slug}",
        "version": 1,
    }


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) for every query of every panel."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            yield panel["title"], target["expr"]


def _target(ref: str, expr: str, legend: str, *, instant: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": _DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if instant:
        target["format"] = "table"
    return target


def _grid(grid: tuple[int, int, int, int]) -> dict[str, int]:
    x, y, w, h = grid
    return {"x": x, "y": y, "w": w, "h": h}


def _timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    grid: tuple[int, int, int, int],
    thresholds: list[tuple[float, str]] | None = None,
    dashed_ref: str | None = None,
    bars: bool = False,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in thresholds or ()]
    overrides = []
    if dashed_ref:
        overrides.append(
            {
                "matcher": {"id": "byFrameRefID", "options": dashed_ref},
                "properties": [
                    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                ],
            }
        )
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": _DATASOURCE,
        "gridPos": _grid(grid),
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": {
                    "drawStyle": "bars" if bars else "line",
                    "lineWidth": 1,
                    "fillOpacity": 60 if bars else 0,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"mode": "normal" if bars else "none", "group": "A"},
                    "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
                },
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": overrides,
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _health_panel(sel: str, *, grid: tuple[int, int, int, int]) -> dict[str, Any]:
    return {
        "type": "state-timeline",
        "title": "Health checks",
        "description": "Each readiness check over time: pass, warn or fail (worst instance).",
        "datasource": _DATASOURCE,
        "gridPos": _grid(grid),
        "targets": [
            _target("A", f"min by (check) (launchguard_health_check_status{{{sel}}})", "{{check}}")
        ],
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "thresholds"},
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "fail", "color": "red", "index": 0},
                            "0.5": {"text": "warn", "color": "yellow", "index": 1},
                            "1": {"text": "pass", "color": "green", "index": 2},
                        },
                    }
                ],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "red", "value": None},
                        {"color": "yellow", "value": 0.5},
                        {"color": "green", "value": 1},
                    ],
                },
            },
            "overrides": [],
        },
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
    }


def _build_panel(sel: str, *, grid: tuple[int, int, int, int]) -> dict[str, Any]:
    return {
        "type": "table",
        "title": "Running build",
        "description": "Service, version and release of every scraped instance.",
        "datasource": _DATASOURCE,
        "gridPos": _grid(grid),
        "targets": [
            _target(
                "A",
                f"max by (instance, service, version, release) (launchguard_build_info{{{sel}}})",
                "",
                instant=True,
            )
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True}},
            }
        ],
    }


def _variables(job: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": _DATASOURCE,
            "definition": "label_values(launchguard_build_info, job)",
            "query": {"query": "label_values(launchguard_build_info, job)", "refId": "job"},
            "current": {"selected": True, "text": job, "value": job},
            "hide": 0,
            "multi": False,
            "includeAll": False,
            "refresh": 2,
            "sort": 1,
            "regex": "",
        },
        {
            "name": "route",
            "label": "Route",
            "type": "query",
            "datasource": _DATASOURCE,
            "definition": f'label_values({_D}_count{{job="$job"}}, http_route)',
            "query": {
                "query": f'label_values({_D}_count{{job="$job"}}, http_route)',
                "refId": "route",
            },
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "regex": "",
        },
    ]
