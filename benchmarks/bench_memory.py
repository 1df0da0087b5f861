"""Memory under a long run: a million requests over 100 routes plus 100,000 random unmatched
paths, in-process, through launchguard with everything on.

    python benchmarks/bench_memory.py            # 1,000,000 + 100,000 requests
    python benchmarks/bench_memory.py --quick    # 20,000 + 2,000

The app is Starlette with 100 routes (``/r{i}/{item_id}``) behind the guard (request metrics,
query ledger, header lint, request ids, access log rendered by ``launchguard.logging.configure()``
to /dev/null). Every 11th request goes to a random path no route matches (``/scan/<random>``,
``/<random>.php``, ...), as scanners do. Measured:

1. RSS (``VmRSS``) after a warm-up that visits every route, at every tenth of the run, and at
   the end; the number of time series in the registry at the same points (it must not grow
   with unmatched paths: they all share one label);
2. then with ``tracemalloc`` on (it slows Python down, so only over the last stretch): traced
   memory before and after another tenth of the run, and the biggest growth by source line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import string
import sys
import time
import tracemalloc
from typing import Any

import _harness as h
from prometheus_client import CollectorRegistry

ROUTES = 100


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def series(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def build() -> tuple[Any, CollectorRegistry]:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from launchguard import LaunchGuard, queries

    async def item(request: Any) -> Any:
        return PlainTextResponse("ok")

    registry = CollectorRegistry()
    queries.hook_installed()
    guard = LaunchGuard(service="bench", release="bench-1", registry=registry, environ={})
    app = Starlette(routes=[Route(f"/r{i}/{{item_id}}", item) for i in range(ROUTES)])
    return guard.asgi(app), registry


def paths(rng: random.Random, count: int, matched_per_unmatched: int) -> Any:
    """``count`` request paths: routes in turn with varying ids, every
    ``matched_per_unmatched + 1``-th a random unmatched path."""
    letters = string.ascii_letters + string.digits
    shapes = ("/scan/{}", "/{}.php", "/wp-admin/{}", "/.env.{}", "/api/v9/{}/x")
    for n in range(count):
        if n % (matched_per_unmatched + 1) == matched_per_unmatched:
            token = "".join(rng.choices(letters, k=rng.randint(4, 24)))
            yield rng.choice(shapes).format(token)
        else:
            yield f"/r{n % ROUTES}/{rng.randint(1, 10**6)}"


async def drive(app: Any, stream: Any) -> int:
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Any:
        return request

    async def send(message: Any) -> None:
        pass

    done = 0
    for path in stream:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1234),
            "server": ("bench", 80),
        }
        await app(scope, receive, send)
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--matched", type=int, default=None, help="requests to matched routes")
    args = parser.parse_args()
    matched = args.matched or (20_000 if args.quick else 1_000_000)
    total = matched + matched // 10  # plus 10 % unmatched: one in 11 requests
    h.null_logging()
    app, registry = build()
    rng = random.Random(7)

    print("## Memory over a long run (in-process ASGI)\n")
    print(f"- machine: {h.machine()}; load average at start {h.load_average()}")
    print(
        f"- {matched:,} requests over {ROUTES} routes + {total - matched:,} random unmatched "
        f"paths, launchguard with everything on\n"
    )
    asyncio.run(drive(app, paths(rng, ROUTES * 3 + 30, 10)))  # warm-up: every route, some 404s
    gc.collect()
    start_rss, start_series = rss_mib(), series(registry)
    print("| requests so far | RSS | RSS growth | time series | elapsed |")
    print("|---|---|---|---|---|")
    print(f"| 0 (after warm-up) | {start_rss:.1f} MiB | - | {start_series} | - |")
    began = time.perf_counter()
    step = total // 10
    done = 0
    for _ in range(10):
        done += asyncio.run(drive(app, paths(rng, step, 10)))
        gc.collect()
        rss = rss_mib()
        print(
            f"| {done:,} | {rss:.1f} MiB | {rss - start_rss:+.1f} MiB | {series(registry)} "
            f"| {time.perf_counter() - began:.0f} s |",
            flush=True,
        )
        print(f"  {done:,}/{total:,}", file=sys.stderr)

    tracemalloc.start(5)
    asyncio.run(drive(app, paths(rng, step // 10, 10)))  # traced warm-up
    gc.collect()
    before = tracemalloc.take_snapshot()
    traced_before = tracemalloc.get_traced_memory()[0]
    more = asyncio.run(drive(app, paths(rng, step, 10)))
    gc.collect()
    after = tracemalloc.take_snapshot()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"\ntracemalloc over {more:,} more requests: traced memory "
        f"{traced_before / 1024:,.0f} KiB -> {traced_after / 1024:,.0f} KiB "
        f"({(traced_after - traced_before) / 1024:+,.0f} KiB, "
        f"{(traced_after - traced_before) / more:+.1f} bytes per request); time series "
        f"{series(registry)}.\n"
    )
    print("Largest growth by line (tracemalloc, top 5):\n")
    print("| size change | blocks | where |")
    print("|---|---|---|")
    for stat in after.compare_to(before, "lineno")[:5]:
        frame = stat.traceback[0]
        where = f"{frame.filename.split('site-packages/')[-1].split('/src/')[-1]}:{frame.lineno}"
        print(f"| {stat.size_diff / 1024:+,.1f} KiB | {stat.count_diff:+,} | `{where}` |")
    print(f"\n- load average at the end {h.load_average()}")


if __name__ == "__main__":
    main()
