"""Where the full guard's time goes, per request, measured in place.

    python benchmarks/profile_guard.py              # ASGI (Starlette), everything on
    python benchmarks/profile_guard.py --wsgi       # Flask
    python benchmarks/profile_guard.py --cprofile   # plus cProfile's top functions

Wraps the guard's parts (request begin and finish, query ledger, header lint, budget watch,
access log and its direct writer) in ``perf_counter_ns`` probes and drives N in-process
requests, then prints the time per request of each part, nested parts included in their
parent. The probes cost about 0.1-0.2 us each; cProfile's numbers inflate function calls, so
read it for where, these for how much. Micro-benchmarks of a part alone (the same code hot in
a loop) run several times faster than the part does between the rest of a request's work on
this kind of machine: measure in place.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any

import _harness as h
import bench_middleware as bm

import launchguard.logging as lg_logging


def probe(totals: dict[str, int], obj: Any, name: str, label: str) -> None:
    """Replace ``obj.name`` by a wrapper adding its run time to ``totals[label]``."""
    original: Callable[..., Any] = getattr(obj, name)
    clock = time.perf_counter_ns
    totals[label] = 0

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0) + clock() - start

    setattr(obj, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wsgi", action="store_true", help="Flask instead of Starlette")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    h.null_logging()
    guard = bm.full_guard()
    totals: dict[str, int] = {"request (app and guard)": 0}
    timer = guard.timer
    probe(totals, timer, "begin", "timer.begin")
    probe(totals, timer, "finish", "timer.finish")
    probe(totals, timer, "_queries_observe", "  query histograms (observe)")
    if timer.linter is not None:
        probe(totals, timer.linter, "observe", "  header lint")
    if getattr(timer, "watch", None) is not None:
        probe(totals, timer.watch, "observe", "  budget watch")
    if timer.access_log is not None:
        probe(totals, timer.access_log, "log", "  access log")
    direct = lg_logging.direct_output()
    if direct is not None:
        probe(totals, direct, "ready", "    rule check (DirectOutput.ready)")
        probe(totals, direct, "emit", "    write + flush (DirectOutput.emit)")
    if args.wsgi:
        from launchguard.integrations.flask import init_app

        app = bm.flask_app()
        init_app(app, guard)
        inner = app.wsgi_app

        def whole(environ: Any, start_response: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return inner(environ, start_response)
            finally:
                totals["request (app and guard)"] = (
                    totals.get("request (app and guard)", 0) + time.perf_counter_ns() - start
                )

        app.wsgi_app = whole  # type: ignore[method-assign]
        run: Callable[[int], float] = lambda n: bm.time_wsgi(app, n)  # noqa: E731
    else:
        from starlette.middleware import Middleware

        from launchguard.asgi import LaunchGuardMiddleware

        app = bm.starlette_app([Middleware(LaunchGuardMiddleware, guard=guard)])

        class Whole:
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                start = time.perf_counter_ns()
                try:
                    await self.app(scope, receive, send)
                finally:
                    totals["request (app and guard)"] = (
                        totals.get("request (app and guard)", 0) + time.perf_counter_ns() - start
                    )

        whole = Whole(app)
        run = lambda n: bm.time_asgi(whole, n)  # noqa: E731
    run(200)
    totals.update(dict.fromkeys(totals, 0))
    n = args.requests
    run(n)
    requests = n  # time_asgi / time_wsgi warmed the app up in run(200)
    print(f"## Full guard, per request, in place ({'Flask' if args.wsgi else 'Starlette'})\n")
    print(f"- {h.machine()}; load average {h.load_average()}; {n:,} requests\n")
    print("| part | per request |")
    print("|---|---|")
    for label, total in totals.items():
        if total:
            name = label.replace("  ", "&nbsp;&nbsp;")
            print(f"| {name} | {total / requests / 1000:.2f} us |")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(run, n)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
