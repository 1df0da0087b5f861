"""The access-log line: what one request's line costs, written the way the guard writes it.

    python benchmarks/bench_logging.py [--quick]

Every variant writes a real line to a file on /dev/null (a ``StreamHandler`` for the
``configure()`` variants, ``PrintLogger`` for plain structlog), rounds interleaved, medians,
this process's CPU time per line.

- "plain structlog JSON line": structlog with level, ISO timestamp and ``JSONRenderer``, no
  redaction, no stdlib logging: the reference;
- "AccessLog.log, structlog path": the guard's access log (route, masked path, status, timing,
  request id, DB counts, release) through ``launchguard.logging.configure()``'s
  structlog-to-stdlib pipeline - what every line cost before the direct writer;
- "AccessLog.log, direct": the same line, same bytes, through
  :class:`launchguard.logging.DirectOutput`; with a repeated path (its masked form cached), a
  path never seen before, a query string, and a secret in the query string (the redactor's
  slow path: then the real processors run).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
from collections.abc import Callable
from typing import Any

import _harness as h
import structlog

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


def variants() -> dict[str, Callable[[], None]]:
    import launchguard.logging as lg_logging
    from launchguard._config import Config
    from launchguard.access import AccessLog
    from launchguard.queries import QueryLedger
    from launchguard.redact import default_redactor
    from launchguard.timing import Exchange

    sink = open(os.devnull, "w")  # noqa: SIM115
    plain = structlog.wrap_logger(
        structlog.PrintLogger(sink),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    lg_logging.configure(stream=sink, json=True)
    log = AccessLog(Config.build({"release": "2026.11.28-4f1c2ab"}, {}), default_redactor())
    ledger = QueryLedger()
    counter = iter(range(10**12))

    def exchange(path: str, query: str = "") -> Exchange:
        ex = Exchange("GET", 0.0)
        ex.path, ex.query = path, query
        ex.request_id = "3f9a1c0e6b7d4a2f8e5c1b9d0a7f6e3c"
        ex.client = "127.0.0.1"
        return ex

    repeated = exchange("/api/customers/42")
    with_query = exchange("/api/customers/42", "page=2&sort=name")
    with_secret = exchange("/oauth/cb", "access_token=ya29.a0AfH6SMBx7Vq3kq2Lr8")

    def line(ex: Exchange) -> Callable[[], None]:
        return lambda: log.log(ex, "/api/customers/{customer_id}", 200, "", 0.012345, ledger)

    def new_path() -> None:
        log.log(
            exchange(f"/api/customers/{next(counter)}"),
            "/api/customers/{customer_id}",
            200,
            "",
            0.012345,
            ledger,
        )

    def structlog_path() -> None:
        direct, lg_logging._direct = lg_logging._direct, None
        try:
            log.log(repeated, "/api/customers/{customer_id}", 200, "", 0.012345, ledger)
        finally:
            lg_logging._direct = direct

    return {
        "plain structlog JSON line (reference)": lambda: plain.info("request", **FIELDS),
        "AccessLog.log, structlog path": structlog_path,
        "AccessLog.log, direct, repeated path": line(repeated),
        "AccessLog.log, direct, new path each time": new_path,
        "AccessLog.log, direct, query string": line(with_query),
        "AccessLog.log, direct, secret in the query": line(with_secret),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clock", choices=sorted(h.CLOCKS), default="cpu")
    args = parser.parse_args()
    h.set_clock(args.clock)
    rounds, n = (3, 500) if args.quick else (21, 5000)
    runs = variants()
    root = logging.getLogger()
    if len(root.handlers) != 1:
        raise SystemExit(f"expected configure()'s handler alone on the root: {root.handlers}")

    def timer(fn: Callable[[], None], count: int) -> float:
        clock = h.clock
        for _ in range(50):
            fn()
        start = clock()
        for _ in range(count):
            fn()
        return (clock() - start) / count

    results = h.interleave({"none": lambda: None, **runs}, timer, rounds, n, baseline="none")
    reference = statistics.median(results["plain structlog JSON line (reference)"])
    print("## Access-log line cost\n")
    print(f"- machine: {h.machine()}; load average {h.load_average()}")
    print(f"- versions: {h.versions(['structlog', 'google-re2'])}")
    print(f"- {rounds} rounds x {n} lines, interleaved, medians, {args.clock} time\n")
    print("| variant | per line | p25-p75 | x reference |")
    print("|---|---|---|---|")
    for name, values in results.items():
        low, mid, high = h.quartiles(values)
        print(f"| {name} | {h.us(mid)} | {h.us(low)}-{h.us(high)} | {mid / reference:.2f} |")
    slow = results["AccessLog.log, structlog path"]
    fast = results["AccessLog.log, direct, repeated path"]
    print(
        f"\n- direct / structlog path: {statistics.median(fast) / statistics.median(slow):.2f} "
        f"(per round {h.per_round_ratio(fast, slow):.2f})"
    )


if __name__ == "__main__":
    main()
