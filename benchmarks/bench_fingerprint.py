"""What a SQL shape costs: a ``ShapeCache`` hit, and ``shape()`` on a cache miss.

    python benchmarks/bench_fingerprint.py [--quick]

Rounds are interleaved (every variant once per round, in a fresh random order); each variant
times a tight loop of calls, and the medians over rounds are reported, with the spread between
the 25th and 75th percentile. Next to launchguard's numbers, in the same rounds:

- floors: an empty loop, a plain ``dict`` subscript (what a cache hit cannot beat) and
  ``hash(str)`` on an uncached string;
- a reference "three Sentry-style regexes" normalizer (quoted strings, numbers, IN lists), the
  cheapest thing that groups literal variants at all (it does not handle comments, placeholders,
  dollar quotes, VALUES rows, digits in identifiers, nor case).
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable

from launchguard.fingerprint import ShapeCache, shape

STATEMENTS = {
    "sqlalchemy lazy load (sqlite)": (
        "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
        "WHERE ? = invoice.customer_id"
    ),
    "django get by pk (psycopg)": (
        'SELECT "billing_customer"."id", "billing_customer"."name" FROM "billing_customer" '
        'WHERE "billing_customer"."id" = %s LIMIT 21'
    ),
    "sqlalchemy IN + sqlcommenter (asyncpg)": (
        "SELECT invoice.id, invoice.customer_id, invoice.note \nFROM invoice \n"
        "WHERE invoice.id IN ($2::INTEGER, $3::INTEGER, $4::INTEGER) "
        "AND invoice.customer_id = $1::INTEGER "
        "/*controller='invoices',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/"
    ),
}

_STRINGS = re.compile(r"'(?:[^']|'')*'")
_NUMBERS = re.compile(r"\b\d+(?:\.\d+)?\b")
_IN_LISTS = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)


def three_regexes(sql: str) -> str:
    """The reference: three Sentry-style substitutions and a hash."""
    sql = _STRINGS.sub("?", sql)
    sql = _NUMBERS.sub("?", sql)
    sql = _IN_LISTS.sub("IN (?)", sql)
    return format(hash(sql) & 0xFFFF_FFFF_FFFF_FFFF, "016x")


def loop(fn: Callable[[str], object], arg: str, n: int) -> float:
    """Seconds per call of ``fn(arg)`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return (time.perf_counter() - start) / n


def empty_loop(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        pass
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    rounds, hits, misses = (3, 20_000, 200) if args.quick else (21, 200_000, 2_000)

    cache = ShapeCache()
    first = next(iter(STATEMENTS.values()))
    cache.get(first)
    table = {first: cache.get(first)}

    def fresh_strings() -> Callable[[str], object]:
        # hash() caches on the str object: hash a new equal string each time.
        return lambda sql: hash("".join((sql, "")))

    variants: dict[str, tuple[str, Callable[[], float]]] = {
        "empty loop": ("ns", lambda: empty_loop(hits)),
        "dict subscript (floor)": ("ns", lambda: loop(table.__getitem__, first, hits)),
        "ShapeCache.get, hit": ("ns", lambda: loop(cache.get, first, hits)),
        "hash(str) of a fresh string (+ copy)": ("ns", lambda: loop(fresh_strings(), first, hits)),
    }
    for name, sql in STATEMENTS.items():
        label = f"{name}, {len(sql)} chars"
        variants[f"shape(): {label}"] = ("us", lambda sql=sql: loop(shape, sql, misses))
        variants[f"three regexes: {label}"] = (
            "us",
            lambda sql=sql: loop(three_regexes, sql, misses),
        )

    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            results[name].append(variants[name][1]())

    print("## SQL shape cost per statement\n")
    print(
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{platform.machine()}, {rounds} interleaved rounds "
        f"({hits} calls per round for hits, {misses} for shape()), medians\n"
    )
    print("| variant | median | p25-p75 |")
    print("|---|---|---|")
    for name, (unit, _) in variants.items():
        values = sorted(results[name])
        scale = 1e9 if unit == "ns" else 1e6
        median = statistics.median(values) * scale
        p25, p75 = (statistics.quantiles(values, n=4)[i] * scale for i in (0, 2))
        print(f"| {name} | {median:.1f} {unit} | {p25:.1f}-{p75:.1f} {unit} |")
    print(
        "\nEvery row includes the loop's own overhead (the 'empty loop' row). "
        "Normalized shapes, for the record:\n"
    )
    for name, sql in STATEMENTS.items():
        print(f"- {name}: `{shape(sql).sql}`")


if __name__ == "__main__":
    main()
