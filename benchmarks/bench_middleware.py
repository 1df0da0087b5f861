"""Per-request overhead of launchguard next to its peers, in one process, rounds interleaved.

    python benchmarks/bench_middleware.py            # full run
    python benchmarks/bench_middleware.py --quick    # smoke run

Each round times N in-process requests through every variant of the same tiny app, in a fresh
random order; a variant's overhead is its time per request minus the bare app's in the same
round. Reported: medians over rounds (and the spread between the 25th and 75th percentile), and
each overhead as a multiple of the "floor" middleware's (perf_counter plus one
``Histogram.labels(...).observe()``, the least a metrics middleware can do).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

warnings.filterwarnings("ignore", category=DeprecationWarning)


# ----------------------------------------------------------------------------- ASGI variants


class AsgiFloor:
    """perf_counter plus one labelled histogram observe: the least a middleware can do."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.histogram = Histogram(
            "floor_seconds", "floor", ["method", "path", "status"], registry=registry
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_wrapper)
        self.histogram.labels(scope["method"], scope["path"], str(status)).observe(
            time.perf_counter() - start
        )


def metrics_only_guard() -> Any:
    """Request metrics alone: no query ledger, request ids or access log."""
    from launchguard import LaunchGuard

    return LaunchGuard(
        service="bench",
        registry=CollectorRegistry(),
        environ={},
        queries=False,
        request_ids=False,
        access_log=False,
    )


def full_guard() -> Any:
    """Everything on: metrics, query ledger (a hook counts as installed), request id, access
    log with redaction rendered as JSON into memory."""
    import io

    import structlog

    from launchguard import LaunchGuard, queries
    from launchguard.logging import RedactingProcessor, add_request_context

    queries.hook_installed()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_request_context,
            RedactingProcessor(),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(io.StringIO()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return LaunchGuard(service="bench", registry=CollectorRegistry(), environ={})


def starlette_app(middleware: list[Any] | None = None, routes: int = 1) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Any) -> Any:
        return PlainTextResponse("ok")

    table = [Route(f"/r{i}/{{item_id}}", item) for i in range(routes - 1)]
    table.append(Route("/items/{item_id}", item))
    return Starlette(routes=table, middleware=middleware or [])


def asgi_variants(routes: int = 1, peers: bool = True) -> dict[str, Any]:
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    variants: dict[str, Any] = {
        "bare": starlette_app(routes=routes),
        "floor": starlette_app(
            [Middleware(AsgiFloor, registry=CollectorRegistry())], routes=routes
        ),
        "launchguard (metrics only)": starlette_app(
            [Middleware(LaunchGuardMiddleware, guard=metrics_only_guard())], routes=routes
        ),
    }
    if peers:
        variants["launchguard full"] = starlette_app(
            [Middleware(LaunchGuardMiddleware, guard=full_guard())], routes=routes
        )
    if not peers:
        return variants
    from prometheus_fastapi_instrumentator import Instrumentator
    from starlette_exporter import PrometheusMiddleware

    pfi = starlette_app(routes=routes)
    Instrumentator(registry=CollectorRegistry()).instrument(pfi)
    variants["prometheus-fastapi-instrumentator"] = pfi
    variants["starlette-exporter"] = starlette_app(
        [Middleware(PrometheusMiddleware, group_paths=True)], routes=routes
    )
    return variants


def time_asgi(app: Any, n: int) -> float:
    """Seconds per request for ``n`` in-process requests to ``/items/7``."""
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/7",
        "raw_path": b"/items/7",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1234),
        "server": ("bench", 80),
    }
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Any:
        return request

    async def send(message: Any) -> None:
        pass

    async def run() -> float:
        for _ in range(50):  # warm caches, lazily built middleware stacks
            await app(dict(template), receive, send)
        start = time.perf_counter()
        for _ in range(n):
            await app(dict(template), receive, send)
        return (time.perf_counter() - start) / n

    return asyncio.run(run())


# ----------------------------------------------------------------------------- WSGI variants


class WsgiFloor:
    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.histogram = Histogram(
            "floor_seconds", "floor", ["method", "path", "status"], registry=registry
        )

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        start = time.perf_counter()
        status = ["500"]

        def start_wrapper(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = code[:3]
            return start_response(code, headers, exc_info)

        body = self.app(environ, start_wrapper)
        self.histogram.labels(environ["REQUEST_METHOD"], environ["PATH_INFO"], status[0]).observe(
            time.perf_counter() - start
        )
        return body


def flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return "ok"

    return app


def wsgi_variants(peers: bool = True) -> dict[str, Any]:
    from launchguard.integrations.flask import init_app

    bare = flask_app()
    floor = flask_app()
    floor.wsgi_app = WsgiFloor(floor.wsgi_app, CollectorRegistry())  # type: ignore[method-assign]
    guarded = flask_app()
    init_app(guarded, metrics_only_guard())
    variants = {"bare": bare, "floor": floor, "launchguard (metrics only)": guarded}
    if peers:
        full = flask_app()
        init_app(full, full_guard())
        variants["launchguard full"] = full
    if peers:
        from prometheus_flask_exporter import PrometheusMetrics

        pfe = flask_app()
        PrometheusMetrics(pfe, registry=CollectorRegistry())
        variants["prometheus-flask-exporter"] = pfe
    return variants


def time_wsgi(app: Any, n: int) -> float:
    import io

    template = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/items/7",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "bench",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def one() -> None:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    for _ in range(50):
        one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    return (time.perf_counter() - start) / n


# ----------------------------------------------------------------------------- harness


def interleave(
    variants: dict[str, Any], timer: Callable[[Any, int], float], rounds: int, n: int
) -> dict[str, list[float]]:
    """Overhead per round (seconds per request minus bare's, same round) of each variant."""
    overheads: dict[str, list[float]] = {name: [] for name in variants if name != "bare"}
    names = list(variants)
    rng = random.Random(1)
    for _ in range(rounds):
        rng.shuffle(names)
        per_request = {}
        for name in names:
            gc.collect()
            per_request[name] = timer(variants[name], n)
        for name in overheads:
            overheads[name].append(per_request[name] - per_request["bare"])
    return overheads


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def report(title: str, overheads: dict[str, list[float]]) -> None:
    """Medians over rounds; "x floor" is the ratio of medians, "per round" the median of the
    rounds' own ratios (steadier when the machine drifts between rounds)."""
    floor = statistics.median(overheads["floor"])
    print(f"\n### {title}\n")
    print("| variant | overhead per request (median) | p25-p75 | x floor | x floor, per round |")
    print("|---|---|---|---|---|")
    for name, values in overheads.items():
        low, mid, high = quartiles(values)
        ratios = [v / f for v, f in zip(values, overheads["floor"], strict=False) if f > 0]
        per_round = statistics.median(ratios) if ratios else float("nan")
        print(
            f"| {name} | {mid * 1e6:.1f} us | {low * 1e6:.1f}-{high * 1e6:.1f} us "
            f"| {mid / floor:.2f} | {per_round:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 15)
    n = args.requests or (500 if args.quick else 4000)

    print("## Middleware overhead, in-process\n")
    print(
        f"- machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}"
    )
    packages = [
        "starlette",
        "flask",
        "prometheus-client",
        "prometheus-fastapi-instrumentator",
        "starlette-exporter",
        "prometheus-flask-exporter",
    ]
    print("- versions: " + ", ".join(f"{p} {version(p)}" for p in packages))
    print(f"- {rounds} rounds x {n} requests per variant, interleaved in a random order per round")
    report("ASGI (Starlette, one route)", interleave(asgi_variants(), time_asgi, rounds, n))
    report("WSGI (Flask, one route)", interleave(wsgi_variants(), time_wsgi, rounds, n))
    for count in (1, 100, 1000):
        variants = asgi_variants(routes=count, peers=False)
        result = interleave(variants, time_asgi, max(5, rounds // 2), n)
        report(f"ASGI, {count} routes (the matched route is the last one)", result)


if __name__ == "__main__":
    main()
