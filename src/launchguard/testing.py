"""Test helpers: fail a test when code issues too many queries or an N+1.

Usage::

    from launchguard.testing import assert_max_queries, assert_no_n_plus_one

    def test_dashboard(client):
        with assert_max_queries(5):
            client.get("/dashboard")          # in this thread, or served by another thread
        with assert_no_n_plus_one():
            client.get("/api/invoices")

They count the statements run directly in the ``with`` block and those of every request the
guard's middleware serves meanwhile, in any thread (a live server, Starlette's TestClient).
Failures list the SQL shapes, counts and the lines of code that issued them.

The pytest plugin (installed with the package, inert until used) adds the ``query_ledger``
fixture, the ``@pytest.mark.max_queries(n)`` marker (fails the test if any one request, or the
test's own code, issues more than ``n`` statements) and the ``--launchguard-strict`` option
(fails every test whose requests show an N+1).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .queries import Finding, QueryLedger, QueryRules, listening, query_ledger

__all__ = ["QueryCapture", "assert_max_queries", "assert_no_n_plus_one", "capture_queries"]


class QueryCapture:
    """The statements seen while capturing: the block's own and each request's ledger."""

    def __init__(self, own: QueryLedger) -> None:
        self.own = own
        self.requests: list[QueryLedger] = []
        self._lock = threading.Lock()

    def _add(self, ledger: QueryLedger) -> None:
        with self._lock:
            self.requests.append(ledger)

    @property
    def ledgers(self) -> list[QueryLedger]:
        """The block's own ledger, then one per request, in the order they finished."""
        with self._lock:
            return [self.own, *self.requests]

    @property
    def count(self) -> int:
        """Statements in all."""
        return sum(ledger.count for ledger in self.ledgers)

    def findings(self, rules: QueryRules | None = None) -> list[Finding]:
        """Findings of every ledger."""
        return [f for ledger in self.ledgers for f in ledger.findings(rules)]

    def describe(self) -> str:
        """Each ledger's SQL shapes, for a failure message."""
        lines = []
        for ledger in self.ledgers:
            if not ledger.count:
                continue
            where = f"request {ledger.route}" if ledger.route else "test code"
            lines.append(f"  {where}: {ledger.count} statements")
            for sql, count, seconds in ledger.shapes()[:10]:
                lines.append(f"    {count:4d} x {sql}  ({seconds * 1000:.1f} ms)")
        return "\n".join(lines)


@contextmanager
def capture_queries() -> Iterator[QueryCapture]:
    """Capture the statements of the block and of the requests served meanwhile."""
    with query_ledger() as own:
        capture = QueryCapture(own)
        with listening(capture._add):
            yield capture


@contextmanager
def assert_max_queries(n: int) -> Iterator[QueryCapture]:
    """Fail if the block, or any one request served meanwhile, issues more than ``n``."""
    with capture_queries() as capture:
        yield capture
    over = [ledger for ledger in capture.ledgers if ledger.count > n]
    if over:
        worst = max(over, key=lambda ledger: ledger.count)
        where = f"request {worst.route}" if worst.route else "the block"
        raise AssertionError(
            f"{where} issued {worst.count} database statements, more than {n}:\n"
            + capture.describe()
        )


@contextmanager
def assert_no_n_plus_one(threshold: int | None = None) -> Iterator[QueryCapture]:
    """Fail if the block or a request served meanwhile shows an N+1 query."""
    rules = QueryRules(n_plus_one_threshold=threshold) if threshold else QueryRules()
    with capture_queries() as capture:
        yield capture
    found = [f for f in capture.findings(rules) if f.kind == "n_plus_one"]
    if found:
        raise AssertionError(
            "N+1 queries:\n" + "\n".join(f"  {f}" for f in found) + "\n" + capture.describe()
        )
