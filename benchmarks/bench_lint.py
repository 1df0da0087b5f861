"""Micro-benchmark of ``launchguard.lint`` on a typical response.

    python benchmarks/bench_lint.py [--quick]

A typical HTML response with 10 headers (caching, cookie, security). Two costs are measured in
interleaved rounds of ``time.perf_counter_ns`` loops; the table shows the median microseconds
per call over the rounds:

* ``lint()``: a route's first response (or a verdict-cache miss);
* ``shape_key()`` + dict lookup: the full shape of a response, for comparison;
* ``HeaderLinter.observe()``: what the middleware pays per response on a steady route (fast
  key, cached verdict, the findings counted);
* through the ASGI middleware: the same response from a raw ASGI app, the guard with
  ``header_lint=True`` minus the guard with ``header_lint=False`` (access log off), so the
  request-header scan and the header capture are included.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry

from launchguard import LaunchGuard
from launchguard.headerlint import FLAG_COOKIE, FLAG_HTTPS, HeaderLinter
from launchguard.lint import ResponseFacts, lint, shape_key
from launchguard.timing import Exchange

FACTS = ResponseFacts(
    method="GET",
    status=200,
    scheme="https",
    path="/account/orders",
    request_has_authorization=False,
    request_has_cookie=True,
    headers=(
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", "5321"),
        ("Date", "Sat, 28 Nov 2026 05:48:51 GMT"),
        ("Cache-Control", "private, no-cache"),
        ("ETag", '"33a64df551425fcc55e4d42a148795d9f25f89d4"'),
        ("Vary", "Cookie, Accept-Encoding"),
        (
            "Set-Cookie",
            "sessionid=q7x2rk9mvb3lp0zt8wc4ny6d; Path=/; Secure; HttpOnly; SameSite=Lax",
        ),
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        (
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'nonce-r4nd0m'; frame-ancestors 'none'",
        ),
    ),
)


RAW_HEADERS = [(n.lower().encode(), v.encode()) for n, v in FACTS.headers]
#: A typical JSON API response (Starlette's JSONResponse plus a no-store policy).
API_HEADERS = [
    (b"content-length", b"1432"),
    (b"content-type", b"application/json"),
    (b"cache-control", b"private, no-store"),
    (b"x-content-type-options", b"nosniff"),
]
REQUEST_HEADERS = [
    (b"host", b"portal.example"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
    (b"accept", b"text/html,application/xhtml+xml"),
    (b"accept-encoding", b"gzip, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"cookie", b"sessionid=q7x2rk9mvb3lp0zt8wc4ny6d; csrftoken=abc"),
]


def raw_app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"<html></html>"})

    return app


def asgi_runner(header_lint: bool, headers: list[tuple[bytes, bytes]]) -> Any:
    guard = LaunchGuard(
        registry=CollectorRegistry(), access_log=False, header_lint=header_lint, environ={}
    )
    app = guard.asgi(raw_app(headers))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/account/orders",
        "raw_path": b"/account/orders",
        "query_string": b"",
        "scheme": "https",
        "headers": REQUEST_HEADERS,
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, calls = (5, 2_000) if args.quick else (15, 20_000)
    cache = {shape_key(FACTS): lint(FACTS)}
    linter = HeaderLinter(registry=CollectorRegistry())
    exchange = Exchange("GET", 0.0)
    exchange.status = 200
    exchange.path = FACTS.path
    exchange.flags = FLAG_HTTPS | FLAG_COOKIE
    exchange.headers = RAW_HEADERS
    linter.observe(exchange, "/account/orders", time.perf_counter())

    def run_lint() -> None:
        lint(FACTS)

    def run_cached() -> None:
        cache.get(shape_key(FACTS))

    def run_observe() -> None:
        linter.observe(exchange, "/account/orders", 1.0)

    cases = {
        "lint() (verdict cache miss)": run_lint,
        "shape_key() + dict lookup": run_cached,
        "HeaderLinter.observe() (steady route)": run_observe,
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            results[name].append((time.perf_counter_ns() - start) / calls / 1000)

    loop = asyncio.new_event_loop()
    for label, headers in (("HTML page, 10 headers", RAW_HEADERS), ("JSON API, 4", API_HEADERS)):
        with_lint, without_lint = asgi_runner(True, headers), asgi_runner(False, headers)
        diffs: list[float] = []
        for index in range(rounds * 2):
            timed = {}
            order = [(True, with_lint), (False, without_lint)]
            if index % 2:
                order.reverse()
            for flag, run in order:
                start = time.perf_counter_ns()
                loop.run_until_complete(run(calls // 2))
                timed[flag] = (time.perf_counter_ns() - start) / (calls // 2) / 1000
            diffs.append(timed[True] - timed[False])
        results[f"ASGI middleware, lint on minus off ({label})"] = diffs
    loop.close()

    print(
        f"Python {sys.version.split()[0]}, {rounds} interleaved rounds x {calls} calls, "
        f"{len(FACTS.headers)} response headers, median us per call (p25-p75)\n"
    )
    print("| operation | median us | p25-p75 |")
    print("|---|---:|---:|")
    for name, values in results.items():
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"| {name} | {statistics.median(values):.2f} | {quartiles[0]:.2f}-{quartiles[2]:.2f} |"
        )


if __name__ == "__main__":
    main()
