"""What the query ledger adds per statement, over the bare hook mechanism it rides on.

    python benchmarks/bench_queries.py [--quick]

Two hook mechanisms, each measured three ways on the same in-memory SQLite ``SELECT``, rounds
interleaved, medians:

- bare: the hook with a no-op body (a Django ``execute_wrapper`` that only calls ``execute``;
  a SQLAlchemy ``before/after_cursor_execute`` listener pair that does nothing);
- ledger, first of its shape: launchguard's hook, each statement in a fresh ledger (the SQL
  string is in the shape cache; the shape is new to the ledger, so no frame walk);
- ledger, repeating: the same statement again and again in one ledger (from the second one on,
  each looks up its calling line: the price of N+1 detection, paid only by repeats).

The ledger's own open/close (once per request, not per statement) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ROUNDS, N = 31, 3000


def timed(fn: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def django_variants() -> dict[str, Callable[[], None]]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
        )
        django.setup()
    from django.db import connection

    from launchguard.integrations.django import _execute_wrapper
    from launchguard.queries import close_ledger, open_ledger

    cursor = connection.cursor()
    sql = "SELECT %s"

    def bare_wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        return execute(sql, params, many, context)

    def bare() -> None:
        with connection.execute_wrapper(bare_wrapper):
            cursor.execute(sql, (1,))

    def first() -> None:
        ledger, token = open_ledger()
        with connection.execute_wrapper(_execute_wrapper):
            cursor.execute(sql, (1,))
        close_ledger(ledger, token)

    def repeating() -> None:
        with connection.execute_wrapper(_execute_wrapper):
            cursor.execute(sql, (1,))

    def open_close() -> None:
        ledger, token = open_ledger()
        close_ledger(ledger, token)

    def bare_plus_open_close() -> None:
        open_close()
        bare()

    return {
        "django: bare execute_wrapper": bare,
        "django: bare + ledger open/close": bare_plus_open_close,
        "django: ledger, first of its shape": first,
        "django: ledger, repeating": repeating,
    }


def sqlalchemy_variants() -> dict[str, Callable[[], None]]:
    from sqlalchemy import create_engine, event, text

    from launchguard.integrations.sqlalchemy import instrument_engine
    from launchguard.queries import close_ledger, open_ledger

    bare_engine = create_engine("sqlite://")
    event.listen(bare_engine, "before_cursor_execute", lambda *a: None)
    event.listen(bare_engine, "after_cursor_execute", lambda *a: None)
    guarded_engine = create_engine("sqlite://")
    instrument_engine(guarded_engine)
    bare_conn = bare_engine.connect()
    guarded_conn = guarded_engine.connect()
    statement = text("SELECT :x")

    def bare() -> None:
        bare_conn.execute(statement, {"x": 1})

    def open_close() -> None:
        ledger, token = open_ledger()
        close_ledger(ledger, token)

    def bare_plus_open_close() -> None:
        open_close()
        bare()

    def first() -> None:
        ledger, token = open_ledger()
        guarded_conn.execute(statement, {"x": 1})
        close_ledger(ledger, token)

    def repeating() -> None:
        guarded_conn.execute(statement, {"x": 1})

    return {
        "sqlalchemy: bare listeners": bare,
        "sqlalchemy: bare + ledger open/close": bare_plus_open_close,
        "sqlalchemy: ledger, first of its shape": first,
        "sqlalchemy: ledger, repeating": repeating,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, n = (3, 500) if args.quick else (ROUNDS, N)
    from launchguard.queries import query_ledger

    variants = {**django_variants(), **sqlalchemy_variants()}
    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for _ in range(rounds):
        random.shuffle(order)  # no variant always runs right after another
        for name, fn in order:
            if "repeating" in name:
                with query_ledger():  # one ledger for the whole batch: every statement repeats
                    results[name].append(timed(fn, n))
            else:
                results[name].append(timed(fn, n))
    print("## Query ledger cost per statement (in-memory SQLite, `SELECT ?`)\n")
    print(
        f"- Python {sys.version.split()[0]}, {rounds} rounds x {n} statements, variants in a "
        "random order each round, medians\n"
    )
    print("| variant | per statement | over bare | over bare, per round (p25-p75) |")
    print("|---|---|---|---|")
    for group in ("django", "sqlalchemy"):
        bare_name = next(k for k in results if k.startswith(group))
        with_ledger_name = f"{group}: bare + ledger open/close"
        for name, values in results.items():
            if not name.startswith(group):
                continue
            base_name = with_ledger_name if "first of its shape" in name else bare_name
            median = statistics.median(values)
            base = statistics.median(results[base_name])
            paired = sorted(v - b for v, b in zip(values, results[base_name], strict=True))
            q1, _, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
            print(
                f"| {name} | {median * 1e6:.2f} us | {(median - base) * 1e6:+.2f} us | "
                f"{statistics.median(paired) * 1e6:+.2f} us ({q1 * 1e6:+.2f}-{q3 * 1e6:+.2f}) |"
            )
    print(
        "\n'first of its shape' is compared with 'bare + ledger open/close' (both open and "
        "close a ledger per statement), so its difference is the per-statement cost alone."
    )
    hook_bodies(rounds, n)


def hook_bodies(rounds: int, n: int) -> None:
    """The SQLAlchemy listeners' bodies called directly, against no-op bodies: the dispatch
    SQLAlchemy does around them is the same for both, so the difference is the ledger's cost
    without the ~20 us of statement execution that makes the table above noisy."""
    import timeit

    from launchguard.integrations.sqlalchemy import _after, _before
    from launchguard.queries import close_ledger, open_ledger

    class Context:  # SQLAlchemy's execution context: a plain object with a __dict__
        pass

    sql, params = "SELECT ?", (1,)

    def noop(*args: Any) -> None:
        pass

    def guarded() -> None:
        ledger, token = open_ledger()
        context = Context()
        _before(None, None, sql, params, context, False)
        _after(None, None, sql, params, context, False)
        close_ledger(ledger, token)

    def bare() -> None:
        ledger, token = open_ledger()
        context = Context()
        noop(None, None, sql, params, context, False)
        noop(None, None, sql, params, context, False)
        close_ledger(ledger, token)

    best = {
        name: min(timeit.Timer(fn).repeat(rounds, n * 5)) / (n * 5)
        for name, fn in (("bare", bare), ("guarded", guarded))
    }
    print(
        "\nSQLAlchemy listener bodies called directly (best of "
        f"{rounds} x {n * 5}): launchguard's before/after pair and QueryLedger.add "
        f"{(best['guarded'] - best['bare']) * 1e6:.2f} us over a no-op pair (both with a "
        "ledger opened and closed around them)."
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    main()
