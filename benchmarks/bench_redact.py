"""redact_text on log lines: clean 150 characters, 150 with a secret, clean 1.5 KB.

    python benchmarks/bench_redact.py [--quick]

Rounds interleaved, medians of the per-call time. Targets (issue 4): at most 3 us, 15 us and
10 us respectively.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from launchguard.redact import _re2_available, redact_text

CLEAN = (
    "2026-11-28T05:48:51.296514Z INFO app.request method=GET path=/api/customers/42 "
    "status=200 duration_ms=12.3 request_id=3f9a1c0e6b7d4a2f8e5c1b9d0a7f6e3c"
)[:150]
SECRET = (
    "2026-11-28T05:48:51Z ERROR payments provider call failed with "
    "key sk_live_4eC39HqLyjWDarjtT1zdp7dc status=401 retry=2 request_id=3f9a1c0e6b7d"
)[:150]
LONG = " ".join([CLEAN] * 10)[:1500]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, n = (3, 2000) if args.quick else (15, 20000)
    cases = {"clean, 150 chars": CLEAN, "with a secret, 150 chars": SECRET, "clean, 1.5 KB": LONG}
    assert redact_text(CLEAN) == CLEAN
    assert redact_text(LONG) == LONG
    assert "sk_live_" not in redact_text(SECRET)
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, text in cases.items():
            start = time.perf_counter()
            for _ in range(n):
                redact_text(text)
            results[name].append((time.perf_counter() - start) / n)
    print("## redact_text per line\n")
    print(
        f"- Python {sys.version.split()[0]}, google-re2 prefilter: {_re2_available()}, "
        f"{rounds} rounds x {n} calls, medians\n"
    )
    print("| line | median | p25-p75 |")
    print("|---|---|---|")
    for name, values in results.items():
        q = statistics.quantiles(values, n=4)
        print(
            f"| {name} | {statistics.median(values) * 1e6:.2f} us | "
            f"{q[0] * 1e6:.2f}-{q[2] * 1e6:.2f} us |"
        )


if __name__ == "__main__":
    main()
