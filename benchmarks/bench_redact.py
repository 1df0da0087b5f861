"""Micro-benchmark of ``Redactor.redact_text`` on log lines.

    python benchmarks/bench_redact.py [--quick]

Three lines: a clean 150-character log line, a 150-character line with a (synthetic) secret and
a clean 1.5 KB JSON access-log line. Each prefilter (google-re2 when installed, and pure ``re``)
is measured in interleaved rounds of ``time.perf_counter_ns`` loops; the table shows the median
microseconds per call over the rounds. Targets: <= 3 us, <= 15 us and <= 10 us.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from launchguard.redact import Redactor, _re2_available

CLEAN = (
    "2026-11-28T05:48:51.296514Z INFO app.request method=GET path=/api/v1/orders/12345 "
    "status=200 duration_ms=12.3 user_id=8812 request_id=7f9c2ba4e88f827d616045507605853e"
)[:150]
# Synthetic: the right shape, random characters.
SECRET = (
    "2026-11-28T05:48:51Z ERROR payments call failed key=sk_live_Q7x2Rk9mVb3Lp0Zt8Wc4Ny6D "
    "status=401 retry=2 duration_ms=81.7 request_id=7f9c2ba4e88f827d616045"
)[:150]
RECORD = {
    "ts": "2026-11-28T05:48:51.296514+00:00",
    "level": "info",
    "logger": "app.access",
    "event": "request finished",
    "method": "GET",
    "path": "/api/v1/orders/12345/items",
    "query": "page=2&per_page=50&sort=-created_at",
    "status": 200,
    "duration_ms": 12.345,
    "bytes": 5321,
    "client_ip": "203.0.113.45",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "referer": "https://shop.example.com/catalog/shoes?color=red&size=42",
    "request_id": "5f0c6c1e-7d7e-4b53-9a0c-2f7d1c3e8b21",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
    "etag": '"33a64df551425fcc55e4d42a148795d9f25f89d4"',
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
}
LONG = json.dumps(RECORD)
while len(LONG) < 1500:
    RECORD[f"note{len(RECORD)}"] = "order processed for customer 12345 with 3 items shipped"
    LONG = json.dumps(RECORD)
LONG = LONG[:1499] + "}"

CASES = {"clean, 150 chars": CLEAN, "with a secret, 150 chars": SECRET, "clean, 1.5 KB": LONG}
TARGETS_US = {"clean, 150 chars": 3.0, "with a secret, 150 chars": 15.0, "clean, 1.5 KB": 10.0}


def per_call_ns(redactor: Redactor, text: str, n: int) -> float:
    run = redactor.redact_text
    start = time.perf_counter_ns()
    for _ in range(n):
        run(text)
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2,000 calls")
    args = parser.parse_args()
    rounds, n = (3, 2000) if args.quick else (15, 20000)
    engines = {"re2": Redactor(prefilter="re2")} if _re2_available() else {}
    engines["re"] = Redactor(prefilter="re")
    for redactor in engines.values():
        if redactor.redact_text(CLEAN) != CLEAN or redactor.redact_text(LONG) != LONG:
            raise SystemExit("a clean line was changed")
        if "sk_live_" in redactor.redact_text(SECRET):
            raise SystemExit("the secret was not masked")
    samples: dict[tuple[str, str], list[float]] = {
        (engine, case): [] for engine in engines for case in CASES
    }
    for _ in range(rounds):  # interleaved: every case of every engine in each round
        for engine, redactor in engines.items():
            for case, text in CASES.items():
                samples[engine, case].append(per_call_ns(redactor, text, n))
    print(
        f"Python {sys.version.split()[0]}, {rounds} interleaved rounds x {n} calls, "
        "median us per call\n"
    )
    print("| line | chars | prefilter | median us | target us |")
    print("|---|---:|---|---:|---:|")
    for engine in engines:
        for case, text in CASES.items():
            median = statistics.median(samples[engine, case]) / 1000
            label = "google-re2 Set" if engine == "re2" else "pure re"
            print(f"| {case} | {len(text)} | {label} | {median:.2f} | {TARGETS_US[case]:.0f} |")


if __name__ == "__main__":
    main()
