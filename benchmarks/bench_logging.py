"""The access-log line: render plus redaction, next to a plain structlog JSON line.

    python benchmarks/bench_logging.py [--quick]

Same event (an access-log line with 9 fields, nothing secret in it, as most lines are), same
structlog chain (level, ISO timestamp, JSON to an in-memory file); "launchguard" adds the
request-context processor and the RedactingProcessor before the renderer. Rounds interleaved,
medians. Also: launchguard.logging.configure()'s full stdlib-bridged path, for reference.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

from launchguard.logging import RedactingProcessor, add_request_context

FIELDS: dict[str, Any] = {
    "method": "GET",
    "route": "/api/customers/{customer_id}",
    "path": "/api/customers/42?page=2&sort=name",
    "status": 200,
    "duration_ms": 12.345,
    "db_queries": 3,
    "db_ms": 4.2,
    "request_id": "3f9a1c0e6b7d4a2f8e5c1b9d0a7f6e3c",
    "release": "2026.11.28-4f1c2ab",
}


def logger(processors: list[Any]) -> Any:
    return structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def variants() -> dict[str, Callable[[], None]]:
    base: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    plain = logger([*base, structlog.processors.JSONRenderer()])
    ours = logger(
        [*base, add_request_context, RedactingProcessor(), structlog.processors.JSONRenderer()]
    )
    stream = io.StringIO()
    import launchguard.logging as lg_logging

    lg_logging.configure(stream=stream, json=True)
    bridged = structlog.get_logger("launchguard.access")

    def bridged_line() -> None:
        bridged.info("request", **FIELDS)
        stream.seek(0)
        stream.truncate()

    return {
        "plain structlog JSON line": lambda: plain.info("request", **FIELDS),
        "launchguard: + request context + redaction": lambda: ours.info("request", **FIELDS),
        "launchguard.logging.configure() (stdlib-bridged)": bridged_line,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, n = (3, 500) if args.quick else (15, 5000)
    runs = variants()
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            for _ in range(n):
                fn()
            results[name].append((time.perf_counter() - start) / n)
    plain = statistics.median(results["plain structlog JSON line"])
    print("## Access-log line cost\n")
    print(
        f"- Python {sys.version.split()[0]}, structlog {structlog.__version__}, "
        f"{rounds} rounds x {n} lines, medians\n"
    )
    print("| variant | per line | x plain |")
    print("|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e6:.1f} us | {median / plain:.2f} |")


if __name__ == "__main__":
    main()
