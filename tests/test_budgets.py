"""The in-process budget watch: rolling p95 accuracy, bounded memory, cooldowns, route classes,
the gauges in a scrape and the slow-request log line."""

from __future__ import annotations

import io
import json
import logging
import math
import random
import time
import tracemalloc
from bisect import bisect_left
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard._config import Config, ConfigError
from launchguard.budgets import (
    SLOTS,
    BudgetWatch,
    histogram_quantile,
    route_budget,
    watch_bounds,
)
from launchguard.integrations import sqlite3 as guarded_sqlite3
from launchguard.queries import Finding
from launchguard.timing import Exchange

from .asgi_util import call
from .helpers import scrape, value

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Alerts:
    """An alert sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def active(self) -> bool:
        return True

    def send(
        self,
        message: str,
        *,
        fingerprint: list[str],
        tags: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        self.sent.append(
            {"message": message, "fingerprint": fingerprint, "tags": tags, "context": context}
        )


def make_watch(
    registry: CollectorRegistry, **options: Any
) -> tuple[LaunchGuard, BudgetWatch, Alerts]:
    options.setdefault("budget_min_samples", 20)
    guard = LaunchGuard(service="t", registry=registry, environ={}, access_log=False, **options)
    watch = guard.budgets
    assert watch is not None
    alerts = Alerts()
    watch.alerts = alerts
    return guard, watch, alerts


def exact_p95(samples: list[float]) -> float:
    """Nearest-rank p95."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def exchange(method: str = "GET", headers: Any = None) -> Exchange:
    ex = Exchange(method, 0.0)
    ex.headers = headers
    return ex


class TestRouteBudget:
    def test_exact_template_beats_globs_and_longest_glob_wins(self) -> None:
        """An exact entry wins; among globs the longest pattern; else page or API budget."""
        config = Config.build(
            {"route_budgets": {"/api/*": 1.0, "/api/reports/*": 2.0, "/api/reports/{id}": 3.0}},
            {},
        )
        assert route_budget(config, "/api/reports/{id}", page=False) == (3.0, "custom")
        assert route_budget(config, "/api/reports/{id}/pdf", page=False) == (2.0, "custom")
        assert route_budget(config, "/api/users", page=True) == (1.0, "custom")
        assert route_budget(config, "/dashboard", page=True) == (0.5, "page")
        assert route_budget(config, "/health", page=False) == (0.3, "api")

    def test_env_var_and_buckets(self) -> None:
        """``route=s,route=s`` from the environment; every budget becomes a bucket bound."""
        config = Config.build({}, {"LAUNCHGUARD_ROUTE_BUDGETS": "/dashboard=1.5, /api/*=0.2"})
        assert config.route_budgets == (("/api/*", 0.2), ("/dashboard", 1.5))
        assert {0.2, 1.5, 0.3, 0.5, 1.0} <= set(config.histogram_buckets)
        assert {0.2, 1.5} <= set(watch_bounds(config))

    @pytest.mark.parametrize(
        "value",
        [{"/a": 0}, {"/a": -1.0}, {"/a": float("nan")}, {"/a": True}, {"": 1.0}, "/a=x", "/a"],
    )
    def test_bad_route_budgets_fail_at_startup(self, value: Any) -> None:
        """A bad budget names the option."""
        with pytest.raises(ConfigError, match="route_budgets"):
            Config.build({"route_budgets": value}, {})

    @pytest.mark.parametrize(
        ("option", "value"),
        [("alert_cooldown", -1), ("budget_window", 5), ("budget_min_samples", 0)],
    )
    def test_bad_watch_options(self, option: str, value: Any) -> None:
        """Window, cooldown and minimum samples are validated."""
        with pytest.raises(ConfigError, match=option):
            Config.build({option: value}, {})


class TestAccuracy:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_p95_estimate_in_the_exact_p95s_bucket_and_breach_decided_exactly(
        self, registry: CollectorRegistry, seed: int
    ) -> None:
        """On known samples: the estimate lies in the exact p95's bucket, and over/within
        budget agrees with the exact p95 for every budget."""
        budgets = {f"/r{i}": b for i, b in enumerate((0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0))}
        _, watch, _ = make_watch(registry, route_budgets=budgets)
        watch.judge_interval = math.inf
        rng = random.Random(seed)
        bounds = watch_bounds(watch.config)
        now = 1000.0
        samples = [rng.lognormvariate(math.log(0.15), 0.8) for _ in range(2000)]
        for route in budgets:
            for i, s in enumerate(samples):
                watch.record(route, "GET", s, now + i * 0.1)
        end = now + len(samples) * 0.1
        exact = exact_p95(samples)
        for route, budget in budgets.items():
            estimate, n = watch.p95(route, end)
            assert n == len(samples)
            assert bisect_left(bounds, estimate) == bisect_left(bounds, exact)
            counts = watch.window(route, end)
            within = sum(counts[: bounds.index(budget) + 1])
            assert (within < 0.95 * n) == (exact > budget)
            assert (estimate > budget) == (exact > budget)

    def test_matches_prometheus_histogram_quantile(self) -> None:
        """Same interpolation as PromQL's histogram_quantile (checked by hand)."""
        bounds = (0.1, 0.3, 0.5)
        # 10 requests <= 0.1, 80 in (0.1, 0.3], 10 in (0.3, 0.5]: rank 95 is 5/10 into the last
        assert histogram_quantile(0.95, [10, 80, 10, 0], bounds) == pytest.approx(0.4)
        assert histogram_quantile(0.95, [0, 0, 0, 4], bounds) == 0.5
        assert math.isnan(histogram_quantile(0.95, [0, 0, 0, 0], bounds))

    def test_window_slides(self, registry: CollectorRegistry) -> None:
        """Requests older than the window are forgotten."""
        _, watch, _ = make_watch(registry, budget_window=300)
        watch.judge_interval = math.inf
        for i in range(100):
            watch.record("/r", "GET", 2.0, 1000.0 + i)
        estimate, n = watch.p95("/r", 1100.0)
        assert (n, 1.0 < estimate <= 2.5) == (100, True)  # inside 2.0's bucket, (1.0, 2.5]
        for i in range(100):
            watch.record("/r", "GET", 0.01, 1400.0 + i)
        estimate, n = watch.p95("/r", 1500.0)
        assert n == 100
        assert estimate <= 0.01


class TestMemory:
    def test_routes_capped_and_bytes_bounded(self, registry: CollectorRegistry) -> None:
        """Past max_routes no route is added; a route's ring stays a few KB whatever the load."""
        _, watch, _ = make_watch(registry, max_routes=200)
        watch.judge_interval = math.inf
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(5000):  # 5,000 routes arrive; 200 are kept
                watch.record(f"/r/{i}", "GET", 0.01, 1000.0)
            for slot in range(SLOTS * 2):  # every slot of every kept route filled, twice over
                now = 1000.0 + slot * 10.0
                for i in range(200):
                    watch.record(f"/r/{i}", "GET", (i % 17) * 0.01, now)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(watch) == 200
        assert used / 200 < 8_000, f"{used / 200:.0f} bytes per route"


class TestBreachesAndCooldown:
    def test_breach_alerts_once_per_cooldown_then_recovers(
        self, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With an injected clock: one alert per route per cooldown, gauge 1 then 0."""
        _, watch, alerts = make_watch(
            registry, route_budgets={"/slow": 0.1}, alert_cooldown=900, budget_window=60
        )
        caplog.set_level(logging.INFO, logger="launchguard.budgets")
        t = 1000.0
        for i in range(400):  # 400 s of slow POSTs, judged every 5 s
            watch.record("/slow", "POST", 0.2, t + i)
        assert [a["fingerprint"] for a in alerts.sent] == [
            ["launchguard", "slow-endpoint", "POST", "/slow"]
        ]
        assert alerts.sent[0]["tags"]["route"] == "/slow"
        assert alerts.sent[0]["context"]["samples"] >= 20
        assert watch.breached() == ["/slow"]
        assert value(scrape(registry), "launchguard_route_budget_breached", http_route="/slow") == 1
        for i in range(400, 1000):  # past the cooldown: a second alert
            watch.record("/slow", "POST", 0.2, t + i)
        assert len(alerts.sent) == 2
        for i in range(1000, 1100):  # back within budget
            watch.record("/slow", "POST", 0.01, t + i)
        assert watch.breached() == []
        assert value(scrape(registry), "launchguard_route_budget_breached", http_route="/slow") == 0
        records = [r for r in caplog.records if r.name == "launchguard.budgets"]
        assert [r.event_kind for r in records] == [  # type: ignore[attr-defined]
            "route_budget_breached",
            "route_budget_breached",
            "route_budget_recovered",
        ]
        breach = records[0]
        assert (breach.route, breach.budget_ms, breach.method) == (  # type: ignore[attr-defined]
            "/slow",
            100.0,
            "POST",
        )
        assert breach.p95_ms > 100  # type: ignore[attr-defined]

    def test_not_judged_below_min_samples(self, registry: CollectorRegistry) -> None:
        """A handful of slow requests is no breach."""
        _, watch, alerts = make_watch(registry, budget_min_samples=50)
        for i in range(49):
            watch.record("/r", "GET", 5.0, 1000.0 + i * 6)
        assert alerts.sent == []
        assert watch.breached() == []

    def test_breached_route_without_traffic_clears(self, registry: CollectorRegistry) -> None:
        """A breach with no request for a whole window is cleared when another route is judged."""
        _, watch, _ = make_watch(registry, budget_window=60)
        for i in range(40):
            watch.record("/a", "GET", 2.0, 1000.0 + i)
        assert watch.breached() == ["/a"]
        watch.record("/b", "GET", 0.01, 1200.0)
        watch.record("/b", "GET", 0.01, 1210.0)
        assert watch.breached() == []

    def test_unmatched_and_overflow_are_not_watched(self, registry: CollectorRegistry) -> None:
        """Scanner 404s never page anyone."""
        _, watch, alerts = make_watch(registry)
        for i in range(100):
            watch.record("__unmatched__", "GET", 9.0, 1000.0 + i)
            watch.record("__overflow__", "GET", 9.0, 1000.0 + i)
        assert len(watch) == 0
        assert alerts.sent == []

    def test_n_plus_one_alert_once_per_route_and_fingerprint(
        self, registry: CollectorRegistry
    ) -> None:
        """N+1 findings go out once per (route, fingerprint) per cooldown."""
        _, watch, alerts = make_watch(registry, alert_cooldown=100)

        def finding(fp: str) -> Finding:
            return Finding("n_plus_one", "/r", fp, "SELECT ? FROM t", 6, 0.01, "app.py:3", "")

        for i in range(10):
            watch.observe(exchange(), "/r", 200, 0.01, 1000.0 + i, None, [finding("aa")])
        watch.observe(exchange(), "/r", 200, 0.01, 1011.0, None, [finding("bb")])
        watch.observe(exchange(), "/r", 200, 0.01, 1200.0, None, [finding("aa")])
        assert [a["fingerprint"][-1] for a in alerts.sent] == ["aa", "bb", "aa"]
        assert alerts.sent[0]["fingerprint"] == ["launchguard", "n-plus-one", "/r", "aa"]
        assert alerts.sent[0]["context"]["call_site"] == "app.py:3"


class TestRouteClass:
    @pytest.mark.parametrize(
        "headers",
        [
            [(b"Content-Type", b"text/html; charset=utf-8")],  # ASGI, any case
            [(b"content-type", b"TEXT/HTML")],
            [("Content-Type", "text/html")],  # WSGI
        ],
    )
    def test_html_is_a_page(self, registry: CollectorRegistry, headers: Any) -> None:
        """A route answering text/html gets the page budget."""
        _, watch, _ = make_watch(registry)
        watch.observe(exchange(headers=headers), "/p", 200, 0.01, 1000.0, None, [])
        samples = scrape(registry)
        assert value(samples, "launchguard_route_budget_seconds", http_route="/p") == 0.5
        assert value(samples, "launchguard_route_budget_seconds", route_class="page") == 0.5
        assert value(samples, "launchguard_route_budget_seconds", route_class="api") == 0

    def test_class_settles_on_first_success(self, registry: CollectorRegistry) -> None:
        """An HTML 404 page says nothing about a route; its first 2xx settles the class."""
        _, watch, _ = make_watch(registry)
        html = [(b"content-type", b"text/html")]
        js = [(b"content-type", b"application/json")]
        watch.observe(exchange(headers=html), "/api", 404, 0.01, 1000.0, None, [])
        assert not value(scrape(registry), "launchguard_route_budget_seconds", http_route="/api")
        watch.observe(exchange(headers=js), "/api", 200, 0.01, 1001.0, None, [])
        watch.observe(exchange(headers=html), "/api", 200, 0.01, 1002.0, None, [])
        samples = scrape(registry)
        assert value(samples, "launchguard_route_budget_seconds", route_class="api") == 0.3
        assert value(samples, "launchguard_route_budget_seconds", route_class="page") == 0

    def test_success_without_content_type_is_an_api(self, registry: CollectorRegistry) -> None:
        """A 204 settles the route as an API."""
        _, watch, _ = make_watch(registry)
        watch.observe(exchange(headers=[]), "/ping", 204, 0.01, 1000.0, None, [])
        samples = scrape(registry)
        assert value(samples, "launchguard_route_budget_seconds", route_class="api") == 0.3

    def test_configured_routes_exported_before_traffic(self, registry: CollectorRegistry) -> None:
        """Exact route_budgets entries are in the scrape from the start (the rules join on it)."""
        make_watch(registry, route_budgets={"/reports": 2.0, "/api/*": 1.0})
        samples = scrape(registry)
        assert value(
            samples, "launchguard_route_budget_seconds", http_route="/reports", route_class="custom"
        ) == pytest.approx(2.0)
        assert not [s for s in samples if s[1].get("http_route") == "/api/*"]


async def html_page(request: Request) -> Response:
    return HTMLResponse("<p>hi</p>")


async def api(request: Request) -> Response:
    return JSONResponse({"ok": True})


def slow(request: Request) -> Response:
    conn = guarded_sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (id INTEGER, token TEXT)")
        for i in range(6):
            conn.execute("SELECT id FROM t WHERE id = ?", (i,))
    finally:
        conn.close()
    time.sleep(0.06)
    return JSONResponse({"ok": True})


class TestInTheMiddleware:
    async def test_classes_from_real_responses(self, registry: CollectorRegistry) -> None:
        """Through the ASGI adapter, HTML and JSON routes get their budgets."""
        guard = LaunchGuard(service="t", registry=registry, environ={}, access_log=False)
        app = guard.asgi(Starlette(routes=[Route("/page", html_page), Route("/api", api)]))
        await call(app, "/page")
        await call(app, "/api")
        samples = scrape(registry)
        assert value(
            samples, "launchguard_route_budget_seconds", http_route="/page", route_class="page"
        ) == pytest.approx(0.5)
        assert value(
            samples, "launchguard_route_budget_seconds", http_route="/api", route_class="api"
        ) == pytest.approx(0.3)
        assert value(samples, "launchguard_route_budget_breached", http_route="/api") == 0

    async def test_slow_request_logged_with_query_breakdown(
        self, registry: CollectorRegistry, log_buffer: io.StringIO
    ) -> None:
        """A request over slow_request: one warning with its queries and findings."""
        guard = LaunchGuard(
            service="t", registry=registry, environ={}, access_log=False, slow_request=0.05
        )
        app = guard.asgi(Starlette(routes=[Route("/slow", slow)]))
        guarded_sqlite3.connect(":memory:").close()  # the hook is announced on first connect
        await call(app, "/slow")
        await call(app, "/slow")  # throttled: one line per route per findings_log_interval
        lines = [json.loads(x) for x in log_buffer.getvalue().splitlines() if x.strip()]
        slow_lines = [x for x in lines if x.get("event_kind") == "slow_request"]
        assert len(slow_lines) == 1
        (line,) = slow_lines
        assert line["logger"] == "launchguard.budgets"
        assert line["level"] == "warning"
        assert line["route"] == "/slow"
        assert line["duration_ms"] >= 50
        assert line["db_queries"] == 7
        assert line["top_queries"][0] == {
            "sql": "SELECT id FROM t WHERE id = ?",
            "count": 6,
            "db_ms": line["top_queries"][0]["db_ms"],
        }
        assert [f["kind"] for f in line["findings"]] == ["n_plus_one"]
        assert line["request_id"]

    async def test_alerts_off(self, registry: CollectorRegistry) -> None:
        """alerts=False: no watch, no budget series."""
        guard = LaunchGuard(service="t", registry=registry, environ={}, alerts=False)
        assert guard.budgets is None
        app = guard.asgi(Starlette(routes=[Route("/api", api)]))
        await call(app, "/api")
        assert not [s for s in scrape(registry) if s[0] == "launchguard_route_budget_seconds"]
