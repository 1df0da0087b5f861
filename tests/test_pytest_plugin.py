"""The pytest plugin, run on small test files with pytest's own pytester."""

from __future__ import annotations

import pytest

TESTS = """
import pytest
from launchguard.queries import record_query

def n_plus_one(n):
    for i in range(n):
        record_query("SELECT * FROM invoice WHERE customer_id = ?", (i,), 0.0)

@pytest.mark.max_queries(3)
def test_within_budget():
    n_plus_one(3)

@pytest.mark.max_queries(3)
def test_over_budget():
    n_plus_one(4)

def test_n_plus_one_unmarked():
    n_plus_one(6)

def test_fixture(query_ledger):
    n_plus_one(2)
    assert query_ledger.count == 2
"""


def test_marker_and_fixture(pytester: pytest.Pytester) -> None:
    """max_queries fails only the test over its budget; the fixture counts statements."""
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_over_budget*", "*issued 4 statements (max_queries=3)*"])


def test_strict_option_fails_n_plus_one(pytester: pytest.Pytester) -> None:
    """--launchguard-strict fails tests that show an N+1, naming the line."""
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--launchguard-strict")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["*n_plus_one: 6 x*at test_strict_option_fails_n_plus_one.py:6 in n_plus_one*"]
    )


def test_strict_ini(pytester: pytest.Pytester) -> None:
    """launchguard_strict = true in the ini file does the same."""
    pytester.makepyfile(TESTS)
    pytester.makeini("[pytest]\nlaunchguard_strict = true\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
