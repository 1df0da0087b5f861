"""Micro-benchmark of ``launchguard.lint`` on a typical response.

    python benchmarks/bench_lint.py [--quick]

A typical HTML response with 10 headers (caching, cookie, security). Two costs are measured in
interleaved rounds of ``time.perf_counter_ns`` loops; the table shows the median microseconds
per call over the rounds:

* ``lint()``: a route's first response (or a verdict-cache miss);
* ``shape_key()`` + dict lookup: the middleware's steady-route cost (verdict cached per key).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from launchguard.lint import ResponseFacts, lint, shape_key

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, calls = (5, 2_000) if args.quick else (15, 20_000)
    cache = {shape_key(FACTS): lint(FACTS)}

    def run_lint() -> None:
        lint(FACTS)

    def run_cached() -> None:
        cache.get(shape_key(FACTS))

    cases = {"lint() (verdict cache miss)": run_lint, "shape_key() + dict lookup": run_cached}
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            results[name].append((time.perf_counter_ns() - start) / calls / 1000)
    print(
        f"Python {sys.version.split()[0]}, {rounds} interleaved rounds x {calls} calls, "
        f"{len(FACTS.headers)} headers, median us per call\n"
    )
    print("| operation | median us |")
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
