"""Bytecode instructions executed per request, by function: a noise-free view of the hot path.

    python benchmarks/count_bytecodes.py                 # Starlette and Flask, top functions
    python benchmarks/count_bytecodes.py --lines access.py:log,logging.py:ready

Timings on a shared machine move by several per cent between runs; the number of bytecode
instructions a request executes does not. This counts them with ``sys.settrace`` opcode events
(slow, so only 512 requests, after 300 untraced ones to warm every cache; 512 spans two of the
batches the guard refills or folds every 256 requests, so their share is counted) for the bare
app, the skeleton of ``bench_lower_bound.py`` (the full guard's jobs with no checks) and the
full guard, and lists the functions where the full guard executes more than the bare app.
Instructions are not time (a dict lookup is one instruction, so is a call into C that takes a
microsecond), but a change that removes instructions from every request shows here exactly,
run after run.
``--lines file:function`` prints those functions line by line.
"""

from __future__ import annotations

import argparse
import linecache
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import _harness as h
import bench_lower_bound as lb
import bench_middleware as bm
from starlette.middleware import Middleware

SOURCE = Path(__file__).resolve().parent.parent / "src" / "launchguard"
Key = tuple[str, str, int]


def asgi_apps() -> dict[str, Any]:
    from launchguard.asgi import LaunchGuardMiddleware

    return {
        "bare": bm.starlette_app(),
        "skeleton": bm.starlette_app([Middleware(lb.AsgiSkeleton)]),
        "full": bm.starlette_app([Middleware(LaunchGuardMiddleware, guard=bm.full_guard())]),
    }


def wsgi_apps() -> dict[str, Any]:
    from launchguard.integrations.flask import init_app

    skeleton = bm.flask_app()
    skeleton.wsgi_app = lb.WsgiSkeleton(skeleton.wsgi_app)
    full = bm.flask_app()
    init_app(full, bm.full_guard())
    return {"bare": bm.flask_app(), "skeleton": skeleton, "full": full}


def count(app: Any, drive: Any, n: int) -> Counter[Key]:
    """Instructions executed by ``n`` requests, per (file, function, line); ``drive`` is
    bench_middleware's ``time_asgi`` or ``time_wsgi`` (its timing is not used here)."""
    drive(app, 300)
    counts: Counter[Key] = Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(Path(code.co_filename).name, code.co_name, frame.f_lineno or 0)] += 1
        return tracer

    sys.settrace(tracer)
    try:
        drive(app, n)
    finally:
        sys.settrace(None)
    return counts


def by_function(counts: Counter[Key]) -> Counter[tuple[str, str]]:
    functions: Counter[tuple[str, str]] = Counter()
    for (file, function, _), value in counts.items():
        functions[(file, function)] += value
    return functions


def report(title: str, apps: dict[str, Any], drive: Any, n: int, lines: list[str]) -> None:
    counts = {name: count(app, drive, n) for name, app in apps.items()}
    totals = {name: sum(found.values()) / n for name, found in counts.items()}
    bare = totals["bare"]
    print(f"\n### {title}\n")
    print("| variant | instructions per request | over bare |")
    print("|---|---|---|")
    for name, total in totals.items():
        print(f"| {name} | {total:,.0f} | {total - bare:+,.0f} |")
    full, base = by_function(counts["full"]), by_function(counts["bare"])
    print("\nWhere the full guard's extra instructions run (functions with 5 or more):\n")
    print("| file | function | per request |")
    print("|---|---|---|")
    for (file, function), value in sorted(
        full.items(), key=lambda item: base.get(item[0], 0) - item[1]
    ):
        extra = (value - base.get((file, function), 0)) / n
        if extra >= 5:
            print(f"| {file} | {function} | {extra:.0f} |")
    for wanted in lines:
        file, _, function = wanted.partition(":")
        rows = sorted(
            (line, value / n)
            for (f, fn, line), value in counts["full"].items()
            if f == file and fn == function
        )
        if not rows:
            continue
        print(f"\n`{file}` `{function}`, per request, by line:\n\n```")
        for line, value in rows:
            text = linecache.getline(str(SOURCE / file), line).rstrip()
            print(f"{value:6.1f}  {line:4d}  {text}")
        print("```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="the same run (it is short)")
    parser.add_argument("--lines", default="", help="file.py:function,... to print by line")
    parser.add_argument("--only", default="asgi,wsgi")
    args = parser.parse_args()
    lines = [item for item in args.lines.split(",") if item]
    h.null_logging()
    print("## Bytecode instructions per request\n")
    print(f"- {h.machine()}; {args.requests} traced requests after 300 untraced")
    if "asgi" in args.only:
        report("ASGI (Starlette, one route)", asgi_apps(), bm.time_asgi, args.requests, lines)
    if "wsgi" in args.only:
        report("WSGI (Flask, one route)", wsgi_apps(), bm.time_wsgi, args.requests, lines)


if __name__ == "__main__":
    main()
