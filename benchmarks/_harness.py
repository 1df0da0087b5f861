"""Shared pieces of the benchmark scripts: interleaved rounds, medians, spreads, tables.

Not a benchmark itself. Every script prints Markdown that goes into RESULTS.md as it is.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: The clock a timer reads: "cpu" (this process's CPU time: steadier on a shared machine, and
#: what a request costs the server) or "wall".
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
clock: Callable[[], float] = time.process_time


def set_clock(name: str) -> None:
    global clock
    clock = CLOCKS[name]


def machine() -> str:
    """One line: CPU model, cores, Python, OS."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def versions(packages: Iterable[str]) -> str:
    out = []
    for name in packages:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def null_logging() -> None:
    """``launchguard.logging.configure()`` writing JSON to a real file handle on /dev/null, so
    a benchmark pays the whole cost of rendering each line and nothing more."""
    import launchguard.logging

    sink = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
    launchguard.logging.configure(stream=sink, json=True)


def interleave(
    variants: dict[str, Any],
    timer: Callable[[Any, int], float],
    rounds: int,
    n: int,
    *,
    baseline: str = "bare",
    seed: int = 1,
    progress: bool = True,
    chunks: int = 1,
) -> dict[str, list[float]]:
    """Overhead per round (seconds per request minus the baseline's, same round) of each
    variant; variants run in a fresh random order every round.

    With ``chunks`` > 1 a round is cut into that many chunks of ``n // chunks`` requests per
    variant, the variants shuffled again in each chunk: a slow phase of a shared machine then
    falls on every variant of the round alike instead of on whichever ran during it."""
    overheads: dict[str, list[float]] = {name: [] for name in variants if name != baseline}
    names = list(variants)
    rng = random.Random(seed)
    chunks = max(1, min(chunks, n))
    per_chunk = n // chunks
    for r in range(rounds):
        gc.collect()
        per_request = dict.fromkeys(names, 0.0)
        for _ in range(chunks):
            rng.shuffle(names)
            for name in names:
                if chunks == 1:
                    gc.collect()
                per_request[name] += timer(variants[name], per_chunk) / chunks
        for name in overheads:
            overheads[name].append(per_request[name] - per_request[baseline])
        if progress:
            print(f"  round {r + 1}/{rounds}", file=sys.stderr, end="\r", flush=True)
    if progress:
        print(file=sys.stderr)
    return overheads


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def per_round_ratio(values: Sequence[float], reference: Sequence[float]) -> float:
    """Median over rounds of ``value / reference`` in the same round."""
    ratios = [v / r for v, r in zip(values, reference, strict=True) if r > 0]
    return statistics.median(ratios) if ratios else float("nan")


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def table(
    title: str,
    overheads: dict[str, list[float]],
    *,
    reference: str = "floor",
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    """A Markdown table: median overhead, p25-p75, x reference (ratio of medians and median
    of the rounds' own ratios). ``extra``: (variant, other) pairs whose ratio is printed
    below the table."""
    ref = statistics.median(overheads[reference]) if reference in overheads else float("nan")
    print(f"\n### {title}\n")
    print(
        f"| variant | overhead per request (median) | p25-p75 | x {reference} "
        f"| x {reference}, per round |"
    )
    print("|---|---|---|---|---|")
    for name, values in overheads.items():
        low, mid, high = quartiles(values)
        ratio = mid / ref if ref > 0 else float("nan")
        rounds = per_round_ratio(values, overheads[reference]) if reference in overheads else ratio
        print(f"| {name} | {us(mid)} | {us(low)}-{us(high)} | {ratio:.2f} | {rounds:.2f} |")
    if extra:
        print()
    for name, other in extra:
        if name in overheads and other in overheads:
            a, b = overheads[name], overheads[other]
            print(
                f"- {name} / {other}: {statistics.median(a) / statistics.median(b):.2f} "
                f"(per round: {per_round_ratio(a, b):.2f}, spread "
                f"{quartiles([x / y for x, y in zip(a, b, strict=True) if y > 0])[0]:.2f}-"
                f"{quartiles([x / y for x, y in zip(a, b, strict=True) if y > 0])[2]:.2f})"
            )


@dataclass
class Run:
    """The settings of an in-process run (see :func:`in_process_run`)."""

    only: str
    rounds: int
    requests: int
    chunks: int


def in_process_run(
    doc: str, title: str, full_rounds: int, packages: Iterable[str], note: str = ""
) -> Run:
    """The options the in-process scripts share (``--quick``, ``--rounds``, ``--requests``,
    ``--chunks``, ``--only``), parsed; logging set up (:func:`null_logging`); the run's heading
    and settings printed. ``doc``: the script's docstring (its first paragraph describes it)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--only", default="asgi,wsgi")
    args = parser.parse_args()
    run = Run(
        only=args.only,
        rounds=args.rounds or (3 if args.quick else full_rounds),
        requests=args.requests or (300 if args.quick else 3000),
        chunks=args.chunks or (3 if args.quick else 30),
    )
    null_logging()
    print(f"## {title}\n")
    print(f"- machine: {machine()}; load average at start {load_average()}")
    print(f"- versions: {versions(packages)}")
    print(
        f"- {run.rounds} rounds x {run.requests} requests per variant; each round in "
        f"{run.chunks} chunks, the variants in a fresh random order in each chunk; clock: cpu "
        f"time{note}"
    )
    return run
