"""Micro-benchmark of the in-process budget watch (``launchguard.budgets``).

    python benchmarks/bench_budgets.py [--quick]

Interleaved rounds of ``time.perf_counter_ns`` loops; the table shows the median microseconds
per call over the rounds (and the p25-p75 spread):

* ``BudgetWatch.observe()``: what ``RequestTimer.finish`` pays per request on a steady route
  (class settled, a fast request, no findings);
* ``BudgetWatch.judge()``: one judgment of a route with all 30 slots filled (runs at most once
  per route every 5 s, not per request);
* an empty method call with the same arguments, for scale;
* through the ASGI middleware: the same raw app, the guard with ``alerts=True`` minus the guard
  with ``alerts=False`` (access log and header lint off in both), so everything the watch adds
  to a request is in;
* the same with Sentry enrichment on (``context.track_exchange``: one ContextVar set and reset
  per request) minus off.

OpenTelemetry is not imported here, so both ASGI variants pay the one ``sys.modules`` lookup
that checks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry

from launchguard import LaunchGuard, context
from launchguard.budgets import SLOTS, BudgetWatch
from launchguard.timing import Exchange

HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"17")]


def raw_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b'{"items": [1, 2]}'})

    return app


def asgi_runner(alerts: bool) -> Any:
    guard = LaunchGuard(
        registry=CollectorRegistry(),
        access_log=False,
        header_lint=False,
        alerts=alerts,
        route_resolver=lambda scope: "/api/items/{item_id}",
        environ={},
    )
    app = guard.asgi(raw_app())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/items/7",
        "raw_path": b"/api/items/7",
        "query_string": b"",
        "scheme": "https",
        "headers": [(b"host", b"portal.example"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def run(n: int) -> None:
        for _ in range(n):
            await app(scope, receive, send)

    return run


class _Empty:
    def observe(self, *args: Any) -> None:
        pass


def interleaved(
    loop: asyncio.AbstractEventLoop, on: Any, off: Any, rounds: int, calls: int, setup: Any = None
) -> list[float]:
    """Per-round (on - off) microseconds per request, order alternating."""
    diffs: list[float] = []
    for index in range(rounds * 2):
        timed = {}
        order = [(True, on), (False, off)]
        if index % 2:
            order.reverse()
        for flag, run in order:
            if setup is not None:
                setup(flag)
            start = time.perf_counter_ns()
            loop.run_until_complete(run(calls))
            timed[flag] = (time.perf_counter_ns() - start) / calls / 1000
        diffs.append(timed[True] - timed[False])
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, calls = (5, 5_000) if args.quick else (15, 50_000)

    guard = LaunchGuard(registry=CollectorRegistry(), access_log=False, environ={})
    watch = guard.budgets
    assert isinstance(watch, BudgetWatch)
    exchange = Exchange("GET", 0.0)
    exchange.headers = HEADERS
    watch.observe(exchange, "/api/items/{item_id}", 200, 0.004, 1000.0, None, [])
    now = time.perf_counter()
    watch.judge_interval = 0.0  # judge whenever asked
    for slot in range(SLOTS):  # a full ring for the judgment
        for i in range(50):
            watch.record("/api/judged", "GET", 0.001 * i, now - 290 + slot * 10)
    empty = _Empty()

    def run_observe() -> None:
        watch.observe(exchange, "/api/items/{item_id}", 200, 0.004, 1000.5, None, [])

    def run_empty() -> None:
        empty.observe(exchange, "/api/items/{item_id}", 200, 0.004, 1000.5, None, [])

    def run_judge() -> None:
        watch.judge("/api/judged", now)

    run_judge()
    assert watch.p95("/api/judged", now)[1] == SLOTS * 50

    cases = {
        "BudgetWatch.observe() (steady route, per request)": (run_observe, calls),
        "empty method call, same arguments": (run_empty, calls),
        "BudgetWatch.judge() (30 full slots, at most every 5 s per route)": (run_judge, 2_000),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, n) in cases.items():
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            results[name].append((time.perf_counter_ns() - start) / n / 1000)

    loop = asyncio.new_event_loop()
    asgi_calls = calls // 5
    results["ASGI middleware, alerts on minus off"] = interleaved(
        loop, asgi_runner(True), asgi_runner(False), rounds, asgi_calls
    )
    enriched = asgi_runner(True)

    def track(flag: bool) -> None:
        context.track_exchange = flag

    results["ASGI middleware, Sentry enrichment on minus off"] = interleaved(
        loop, enriched, enriched, rounds, asgi_calls, setup=track
    )
    context.track_exchange = False
    loop.close()

    print(
        f"Python {sys.version.split()[0]}, {rounds} interleaved rounds, "
        f"median us per call (p25-p75)\n"
    )
    print("| operation | median us | p25-p75 |")
    print("|---|---:|---:|")
    for name, values in results.items():
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"| {name} | {statistics.median(values):.3f} | {quartiles[0]:.3f}-{quartiles[2]:.3f} |"
        )


if __name__ == "__main__":
    main()
