"""The query ledger and its findings, fed through the public ``record_query`` entry point."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard, queries
from launchguard.queries import QueryRules, current_ledger, query_ledger, record_query
from launchguard.testing import assert_max_queries, assert_no_n_plus_one
from launchguard.warnings import NPlusOneWarning, QueryWarning

from .asgi_util import call, status_of
from .helpers import scrape, value

CHILD = "SELECT invoice.id, invoice.amount FROM invoice WHERE invoice.customer_id = ?"
PARENT = "SELECT customer.id, customer.name FROM customer"


def n_plus_one(n: int) -> None:
    record_query(PARENT, (), 0.001)
    for customer_id in range(n):
        record_query(CHILD, (customer_id,), 0.001)  # the N+1 line


@pytest.fixture
def hooked() -> Any:
    """Pretend a database hook is installed, so the middleware opens ledgers."""
    queries.hook_installed()
    yield
    queries.hook_removed()


class TestLedger:
    def test_counts_and_time(self) -> None:
        """Every statement is counted and timed; shapes group literal variants."""
        with query_ledger() as ledger:
            n_plus_one(3)
        assert (ledger.count, round(ledger.seconds, 6)) == (4, 0.004)
        assert [(count) for _, count, _ in ledger.shapes()] == [3, 1]

    def test_nothing_recorded_outside_a_ledger(self) -> None:
        """Outside any ledger, record_query is a no-op."""
        assert current_ledger() is None
        record_query(PARENT, (), 0.1)
        assert current_ledger() is None

    def test_nested_ledger_merges_into_parent(self) -> None:
        """A ledger opened inside another hands its statements up when it closes."""
        with query_ledger() as outer:
            record_query(PARENT, (), 0.0)
            with query_ledger() as inner:
                n_plus_one(2)
        assert (inner.count, outer.count) == (3, 4)

    def test_empty_ledgers_share_nothing_they_change(self) -> None:
        """Ledgers start without groups of their own; their first statement, or a merge into
        an empty one, gives them a dict of their own, so no ledger sees another's groups."""
        with query_ledger() as outer:
            with query_ledger() as empty:
                pass
            with query_ledger() as inner:
                n_plus_one(2)
        with query_ledger() as later:
            pass
        assert queries._NO_GROUPS == {}
        assert (empty.shapes(), later.shapes()) == ([], [])
        assert [count for _, count, _ in inner.shapes()] == [2, 1]
        assert [count for _, count, _ in outer.shapes()] == [2, 1]
        assert outer._groups is not inner._groups

    def test_parameters_are_never_stored(self) -> None:
        """Only hashes of parameters are kept, never the values."""
        secret = "s3cr3t-value-4242"
        with query_ledger() as ledger:
            record_query(CHILD, (secret,), 0.0)
            record_query(CHILD, (secret,), 0.0)
        stored = repr([(g.shape, g.keys, g.sites) for g in ledger._groups.values()])
        assert secret not in stored
        assert "4242" not in stored


class TestFindings:
    def test_n_plus_one_with_call_site(self) -> None:
        """Five or more of one SELECT shape from one line is an N+1, pointing at that line."""
        with query_ledger("/invoices") as ledger:
            n_plus_one(6)
        (finding,) = [f for f in ledger.findings() if f.kind == "n_plus_one"]
        assert finding.count == 6
        assert finding.route == "/invoices"
        assert finding.call_site is not None
        assert finding.call_site.startswith("tests/test_queries.py:")
        assert finding.call_site.endswith("in n_plus_one")
        assert "selectinload" not in finding.hint  # orm "sql": the generic hint

    def test_below_threshold_is_not_n_plus_one(self) -> None:
        """Four repeats stay under the default threshold of five."""
        with query_ledger() as ledger:
            n_plus_one(4)
        assert not [f for f in ledger.findings() if f.kind == "n_plus_one"]

    def test_interleaved_statements_still_grouped(self) -> None:
        """An N+1 interleaved with other statements is found (grouping, not adjacency)."""
        with query_ledger() as ledger:
            for customer_id in range(5):
                record_query(CHILD, (customer_id,), 0.0)
                record_query(f"SELECT {customer_id} FROM audit", (), 0.0)
        kinds = [f.kind for f in ledger.findings()]
        assert kinds.count("n_plus_one") == 2  # the child SELECT, and the audit SELECT shape

    def test_writes_do_not_count_by_default(self) -> None:
        """Repeated INSERTs (an ORM flush) are no N+1 unless n_plus_one_writes is on."""
        with query_ledger() as ledger:
            for i in range(10):
                record_query("INSERT INTO invoice (amount) VALUES (?)", (i,), 0.0)
        assert not [f for f in ledger.findings() if f.kind == "n_plus_one"]
        strict = QueryRules(n_plus_one_writes=True)
        assert [f.kind for f in ledger.findings(strict)] == ["n_plus_one"]

    def test_duplicate_query(self) -> None:
        """The same statement with the same parameters twice is a duplicate."""
        with query_ledger() as ledger:
            record_query(CHILD, (1,), 0.0)
            record_query(CHILD, (1,), 0.0)
            record_query(CHILD, (2,), 0.0)
        (duplicate,) = ledger.findings()
        assert (duplicate.kind, duplicate.count) == ("duplicate_query", 2)

    def test_chatty_request_uses_route_budget(self) -> None:
        """More statements than the route's budget is a chatty request."""
        rules = QueryRules(query_budget=20, route_query_budgets={"/report": 3})
        with query_ledger("/report") as ledger:
            for i in range(4):
                record_query(f"SELECT * FROM t{i}", (), 0.0)
        assert [f.kind for f in ledger.findings(rules)] == ["chatty_request"]
        ledger.route = "/other"
        assert ledger.findings(rules) == []

    def test_slow_query(self) -> None:
        """One statement over the threshold is a slow query."""
        with query_ledger() as ledger:
            record_query(PARENT, (), 0.7)
        (slow,) = ledger.findings()
        assert (slow.kind, slow.seconds) == ("slow_query", 0.7)

    def test_failed_statements_counted(self) -> None:
        """Statements that fail count too."""
        with query_ledger() as ledger:
            record_query(PARENT, (), 0.0, failed=True)
        assert (ledger.count, ledger.errors) == (1, 1)


class TestCallSiteCost:
    def test_no_frame_walk_until_a_shape_repeats(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The calling line is looked up only from a shape's second statement on.

        A spy wraps the frame walk to count its calls; nothing else is replaced.
        """
        calls = []
        original = queries.call_site

        def spy(max_depth: int = 80) -> str | None:
            calls.append(1)
            return original(max_depth)

        monkeypatch.setattr(queries, "call_site", spy)
        with query_ledger():
            for i in range(10):
                record_query(f"SELECT * FROM table_{i}", (), 0.0)
            assert calls == []
            record_query("SELECT * FROM table_0", (), 0.0)
        assert calls == [1]


class TestHelpers:
    def test_assert_max_queries(self) -> None:
        """assert_max_queries fails past the budget, listing the shapes."""
        with assert_max_queries(4):
            n_plus_one(3)
        expected = r"(?s)issued 5 database statements.*4 x SELECT invoice"
        with pytest.raises(AssertionError, match=expected):
            with assert_max_queries(4):
                n_plus_one(4)

    def test_assert_no_n_plus_one(self) -> None:
        """assert_no_n_plus_one names the shape and the line."""
        with assert_no_n_plus_one():
            n_plus_one(4)
        with pytest.raises(AssertionError, match=r"n_plus_one: 5 x .* at tests/test_queries"):
            with assert_no_n_plus_one():
                n_plus_one(5)

    def test_requests_served_by_other_threads_are_seen(
        self, registry: CollectorRegistry, hooked: None
    ) -> None:
        """Requests the middleware serves in another thread reach the helpers too."""
        app = LaunchGuard(registry=registry, environ={}).asgi(_app())

        def serve() -> None:
            asyncio.run(call(app, "/customers/7"))

        with pytest.raises(AssertionError, match=r"request /customers/\{n\} issued 8"):
            with assert_max_queries(5):
                thread = threading.Thread(target=serve)
                thread.start()
                thread.join()


def _app() -> Starlette:
    async def customers(request: Request) -> Response:
        n = int(request.path_params["n"])
        n_plus_one(n)
        return PlainTextResponse(str(current_ledger() and current_ledger().count))  # type: ignore[union-attr]

    return Starlette(routes=[Route("/customers/{n}", customers)])


@pytest.mark.anyio
class TestMiddleware:
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_metrics_and_findings_counter(
        self, registry: CollectorRegistry, hooked: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Per-route query histograms and a findings counter; one log line per finding."""
        app = LaunchGuard(registry=registry, environ={}).asgi(_app())
        for _ in range(3):
            assert status_of(await call(app, "/customers/6")) == 200
        samples = scrape(registry)
        route = "/customers/{n}"
        assert value(samples, "launchguard_db_queries_per_request_sum", http_route=route) == 21
        assert value(samples, "launchguard_db_queries_per_request_count", http_route=route) == 3
        assert value(
            samples, "launchguard_db_time_per_request_seconds_sum", http_route=route
        ) == pytest.approx(0.021)
        assert (
            value(samples, "launchguard_query_findings_total", http_route=route, kind="n_plus_one")
            == 3
        )
        logged = [r for r in caplog.records if r.name == "launchguard.queries"]
        assert len(logged) == 1  # throttled: once per (route, kind, shape, site) per interval
        assert logged[0].launchguard_finding["call_site"].endswith("in n_plus_one")  # type: ignore[attr-defined]

    async def test_server_timing_header(self, registry: CollectorRegistry, hooked: None) -> None:
        """With server_timing on, the response says the DB time and count."""
        app = LaunchGuard(registry=registry, environ={}, server_timing=True).asgi(_app())
        messages = await call(app, "/customers/2")
        start = next(m for m in messages if m["type"] == "http.response.start")
        timing = dict(start["headers"])[b"server-timing"].decode()
        assert timing == 'db;dur=3.0;desc="3 queries"'

    async def test_warn_findings(self, registry: CollectorRegistry, hooked: None) -> None:
        """warn_findings raises NPlusOneWarning (a suite turns it into an error)."""
        app = LaunchGuard(registry=registry, environ={}, warn_findings=True).asgi(_app())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await call(app, "/customers/5")
        # (header-lint warnings of the bare test app are raised too; only query ones count here)
        assert [w.category for w in caught if issubclass(w.category, QueryWarning)] == [
            NPlusOneWarning
        ]

    async def test_queries_off(self, registry: CollectorRegistry, hooked: None) -> None:
        """queries=False opens no ledger."""
        app = LaunchGuard(registry=registry, environ={}, queries=False).asgi(_app())
        await call(app, "/customers/5")
        assert value(scrape(registry), "launchguard_db_queries_per_request_count") == 0
