"""pytest plugin (registered as ``launchguard``): query budgets and N+1 checks in tests.

- ``query_ledger`` fixture: a :class:`~launchguard.testing.QueryCapture` of the test.
- ``@pytest.mark.max_queries(n)``: fail when any one request (or the test's own code) issues
  more than ``n`` database statements.
- ``--launchguard-strict`` (or ``launchguard_strict = true`` in the ini file): fail every test
  whose requests or code show an N+1 query.

Nothing happens in tests that use none of these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .testing import QueryCapture, capture_queries

__all__ = ["pytest_addoption", "pytest_configure", "query_ledger"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("launchguard")
    group.addoption(
        "--launchguard-strict",
        action="store_true",
        default=None,
        help="fail tests whose requests or code show an N+1 query",
    )
    parser.addini(
        "launchguard_strict", "fail tests that show an N+1 query", type="bool", default=False
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "max_queries(n): fail if any one request (or the test itself) issues more than n "
        "database statements",
    )


def _strict(config: pytest.Config) -> bool:
    option = config.getoption("launchguard_strict")
    return bool(option if option is not None else config.getini("launchguard_strict"))


@pytest.fixture
def query_ledger() -> Iterator[QueryCapture]:
    """The database statements of this test and of the requests it makes."""
    with capture_queries() as capture:
        yield capture


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    marker = item.get_closest_marker("max_queries")
    if marker is None and not _strict(item.config):
        return (yield)
    limit = int(marker.args[0]) if marker is not None else None
    capture = getattr(item, "funcargs", {}).get("query_ledger")
    if isinstance(capture, QueryCapture):  # the test's own fixture already captures
        result = yield
    else:
        with capture_queries() as capture:
            result = yield
    problems = []
    if limit is not None:
        for ledger in capture.ledgers:
            if ledger.count > limit:
                where = f"request {ledger.route}" if ledger.route else "the test"
                problems.append(f"{where} issued {ledger.count} statements (max_queries={limit})")
    if _strict(item.config):
        problems += [str(f) for f in capture.findings() if f.kind == "n_plus_one"]
    if problems:
        pytest.fail(
            "launchguard: " + "; ".join(problems) + "\n" + capture.describe(), pytrace=False
        )
    return result
