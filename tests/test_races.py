"""Races between threads of a threaded WSGI server, forced where they happen.

Each test makes the other thread run at the exact point a thread switch would break the code:
through a dict or proxy whose method lets it in, or by holding the real lock until both threads
wait on it. A switch there cannot be brought about on demand any other way; hammering the code
with threads finds these only now and then (a review's scripts did, 2 to 285 times in 300).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from launchguard import LaunchGuard
from launchguard.headerlint import FLAG_HTTPS, LINT_FINDINGS, HeaderLinter
from launchguard.metrics import RequestMetrics
from launchguard.queries import QueryLedger, QueryRules
from launchguard.routes import RouteLabels
from launchguard.timing import Exchange

SERIES = ("GET", "/a", "200", "")


def test_first_exemplar_of_a_series_during_a_scrape() -> None:
    """A request's trace exemplar for a new series, while a scrape reads the exemplars: the
    scrape completes (it used to fail with "dictionary changed size during iteration")."""
    registry = CollectorRegistry()
    store = RequestMetrics(registry, (0.1, 1.0)).store
    store.observe(SERIES, 0.2)
    store.exemplar(SERIES, 0.2, {"trace_id": "a" * 32})
    other = threading.Thread(
        target=store.exemplar, args=(("GET", "/b", "200", ""), 0.2, {"trace_id": "b" * 32})
    )

    class RequestArrivesMidScrape(dict[Any, Any]):
        def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
            entries = iter(dict.items(self))
            yield next(entries)
            other.start()  # the request thread runs now; it may have to wait for the scrape
            other.join(timeout=0.2)
            yield from entries

    store._exemplars = RequestArrivesMidScrape(store._exemplars)
    text = generate_latest(registry).decode()
    other.join()
    assert 'http_route="/a"' in text
    assert ("GET", "/b", "200", "") in store._exemplars


def test_lint_counter_counts_a_hit_on_a_verdict_being_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under several worker processes the lint counter is a real Counter incremented per
    response. A second response counted while the first one's verdict is being made is in it
    (the verdict's counter children used to be set after it was published: that hit was lost)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = CollectorRegistry()
    linter = HeaderLinter(registry=registry)
    assert linter._counter is not None
    exchange = Exchange("GET", 0.0)
    exchange.status, exchange.path, exchange.flags = 200, "/account", FLAG_HTTPS
    exchange.headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]
    real = linter._counter
    other = threading.Thread(target=linter.observe, args=(exchange, "/account", 1.0))

    class SecondResponseMeanwhile:
        def labels(self, *values: str) -> Any:
            if not other.is_alive() and other.ident is None:
                other.start()  # another thread's response to the same route, now
                other.join()
            return real.labels(*values)

    linter._counter = SecondResponseMeanwhile()  # type: ignore[assignment]
    linter.observe(exchange, "/account", 1.0)
    counted = registry.get_sample_value(
        f"{LINT_FINDINGS}_total", {"http_route": "/account", "rule": "hsts-missing"}
    )
    assert linter.counts()[("/account", "hsts-missing")] == 2
    assert counted == 2


def test_findings_while_another_thread_of_the_request_queries() -> None:
    """A request's statements still arriving from a thread of its own while its findings are
    made: they are made (it used to raise "dictionary changed size during iteration", and the
    request lost its findings)."""
    ledger = QueryLedger("/orders")
    for i in range(6):
        ledger.add("SELECT * FROM item WHERE id = %s", (i % 3,), 0.001, "sql")
    (group,) = ledger._groups.values()

    class StatementArrivesMeanwhile(dict[Any, Any]):
        def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
            entries = iter(dict.items(self))
            yield next(entries)
            ledger.add("SELECT * FROM item WHERE id = %s", (99,), 0.001, "sql")
            yield from entries

    assert group.keys is not None
    group.keys = StatementArrivesMeanwhile(group.keys)
    kinds = {finding.kind for finding in ledger.findings(QueryRules())}
    assert {"n_plus_one", "duplicate_query"} <= kinds


def test_budget_alert_while_a_new_method_goes_over() -> None:
    """The breach alert names the method most over budget; a request of another method going
    over meanwhile does not lose the alert (it used to raise after the cooldown was taken, and
    the alert and its log line were lost for the whole cooldown)."""
    guard = LaunchGuard(
        service="t",
        registry=CollectorRegistry(),
        environ={},
        access_log=False,
        route_budgets={"/slow": 0.1},
        budget_window=60,
        budget_min_samples=20,
    )
    watch = guard.budgets
    assert watch is not None
    sent: list[str] = []

    class Alerts:
        def active(self) -> bool:
            return True

        def send(self, message: str, **fields: Any) -> None:
            sent.append(message)

    watch.alerts = Alerts()  # type: ignore[assignment]
    watch.record("/slow", "GET", 0.2, 1000.0)

    class PostGoesOverMeanwhile(dict[str, int]):
        armed = True

        def __getitem__(self, method: str) -> int:
            if self.armed:
                self.armed = False
                self["POST"] = self.get("POST", 0) + 1  # what another request's observe does
            return dict.__getitem__(self, method)

    state = watch._states["/slow"]
    state.over_methods = PostGoesOverMeanwhile(state.over_methods)
    for second in range(1, 120):
        watch.record("/slow", "GET", 0.2, 1000.0 + second)
    assert watch.breached() == ["/slow"]
    assert len(sent) == 1
    assert "GET" in sent[0]


def test_two_first_requests_of_a_route_at_the_cap() -> None:
    """Two threads' first requests of a new route, both past the lock-free lookup when the last
    free label slot is taken: both get the route's label (one used to get ``__overflow__``)."""
    labels = RouteLabels(max_routes=3, unmatched="__unmatched__")
    labels.admit("/a")
    labels.admit("/b")
    got = _both_past_the_lock_free_check(labels._lock, labels.admit, "/c", "/c")
    assert got == ["/c", "/c"]
    assert labels.admit("/d") == "__overflow__"


def test_a_scrape_shows_both_query_histograms_at_one_moment() -> None:
    """Statements per request and database time per request come from one observation per
    request: a scrape shows the same number of requests in both, even when requests are folded
    in while it reads them (the two used to be read one after the other, each under its own
    lock, so requests folded in between showed in one and not the other)."""
    registry = CollectorRegistry()
    queries = RequestMetrics(registry, (0.1, 1.0)).queries
    for _ in range(10):
        queries.observe("/a", 3, 0.002)
    other = threading.Thread(
        target=lambda: [queries.observe("/a", 3, 0.002) for _ in range(300)]  # folds at 256
    )

    class RequestsFinishMeanwhile(dict[Any, Any]):
        def items(self) -> Any:  # type: ignore[override]
            if other.ident is None:
                other.start()  # requests finish while the scrape reads this histogram
                other.join(timeout=0.5)  # (it may have to wait for the scrape's lock)
            return dict.items(self)

    queries.count._series = RequestsFinishMeanwhile(queries.count._series)  # type: ignore[union-attr]
    counts = {
        sample.name: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    other.join()
    assert (
        counts["launchguard_db_queries_per_request_count"]
        == counts["launchguard_db_time_per_request_seconds_count"]
    )


def test_error_types_stay_capped_across_threads() -> None:
    """Two threads' requests with new error types when one slot is left: one is kept, the other
    counts as ``_OTHER`` (both used to be kept, past the cap)."""
    from launchguard.metrics import MAX_ERROR_TYPES

    metrics = RequestMetrics(CollectorRegistry(), (0.1, 1.0))
    for i in range(MAX_ERROR_TYPES - 1):
        metrics.bound_error_type(f"Error{i}")
    got = _both_past_the_lock_free_check(
        metrics._error_types_lock, metrics.bound_error_type, "LateA", "LateB"
    )
    assert "_OTHER" in got
    assert len({"LateA", "LateB"} & set(got)) == 1
    assert len(metrics._error_types) == MAX_ERROR_TYPES


def _both_past_the_lock_free_check(
    lock: Any, call: Callable[[str], str], first: str, second: str
) -> list[str]:
    """``call(first)`` and ``call(second)`` in two threads, both held at ``lock`` (taken here
    first) so that both are past the lock-free check before either goes on; their results."""
    got: list[str] = []
    lock.acquire()
    threads = [
        threading.Thread(target=lambda a=arg: got.append(call(a))) for arg in (first, second)
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.2)  # both are waiting on the lock by then
    finally:
        lock.release()
    for thread in threads:
        thread.join()
    return got
