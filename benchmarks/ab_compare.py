"""A/B: the working tree's guard against another commit's, alternating processes.

    python benchmarks/ab_compare.py HEAD~1                 # ASGI, 4 pairs of runs
    python benchmarks/ab_compare.py main --only wsgi --pairs 6

Two versions of launchguard cannot share a process (each installs its own logging handler), so
this checks the other commit out into a temporary git worktree and runs
``bench_lower_bound.py`` alternately with that worktree's ``src`` first on ``PYTHONPATH`` and
with the working tree's, ``--pairs`` times. Each run reports, per round, launchguard full over
the peer (prometheus-fastapi-instrumentator, or prometheus-flask-exporter for ``wsgi``) and over
the skeleton: ratios within one process, so a machine that speeds up or slows down between runs
moves both sides alike. A change is worth keeping when its ratios sit below the other side's in
most pairs; a difference of 0.01 is about what the runs spread.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RATIO = re.compile(r"^- launchguard full / ([\w-]+)[^\n]*?\(per round: ([0-9.]+)", re.MULTILINE)


def run(src: Path, only: str, rounds: int) -> dict[str, float]:
    """One run of bench_lower_bound.py with ``src`` first on the path: its per-round ratios."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, str(HERE / "bench_lower_bound.py"), "--only", only]
    command += ["--rounds", str(rounds), "--chunks", str(2 * rounds)]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800
    )
    return {other: float(value) for other, value in RATIO.findall(done.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the commit to compare the working tree with")
    parser.add_argument("--only", choices=["asgi", "wsgi"], default="asgi")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one pair of 3-round runs")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.rounds = 1, 3
    with tempfile.TemporaryDirectory(prefix="launchguard-ab-") as tmp:
        other = Path(tmp) / "other"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(other), args.ref],
            cwd=ROOT,
            check=True,
        )
        try:
            sides = {args.ref: other / "src", "working tree": ROOT / "src"}
            results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
            for pair in range(args.pairs):
                for name, src in sides.items():
                    results[name].append(run(src, args.only, args.rounds))
                    print(f"pair {pair + 1}, {name}: {results[name][-1]}", file=sys.stderr)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False
            )
    print(f"## A/B ({args.only}): launchguard full over ..., per-round medians of each run\n")
    names = sorted({key for runs in results.values() for found in runs for key in found})
    print("| side | " + " | ".join(f"x {name}" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for side, runs in results.items():
        cells = []
        for name in names:
            values = sorted(found[name] for found in runs if name in found)
            cells.append(
                f"{statistics.median(values):.3f} ({', '.join(f'{v:.2f}' for v in values)})"
            )
        print(f"| {side} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
