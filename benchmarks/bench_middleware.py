"""Per-request overhead of launchguard next to its peers, in one process, rounds interleaved.

    python benchmarks/bench_middleware.py            # full run (about 10 minutes)
    python benchmarks/bench_middleware.py --quick    # smoke run
    python benchmarks/bench_middleware.py --only asgi,wsgi,fastapi,routes,scaling,otel

Each round times N in-process requests through every variant of the same tiny app, in a fresh
random order; a variant's overhead is its time per request minus the bare app's in the same
round. Reported: medians over rounds, the spread between the 25th and 75th percentile, each
overhead as a multiple of the "floor" middleware's (perf_counter plus one
``Histogram.labels(...).observe()``, the least a metrics middleware can do), and the ratios the
targets are about, computed round by round.

"launchguard full" has everything on: request metrics, query ledger (a database hook counts as
installed), header lint, request id (made and echoed), and the access-log line with redaction,
written by ``launchguard.logging.configure()``'s handler to a file on /dev/null (so rendering
and writing are paid for).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
import warnings
from collections.abc import Iterable
from typing import Any

import _harness as h
from prometheus_client import CollectorRegistry, Histogram

warnings.filterwarnings("ignore", category=DeprecationWarning)

PACKAGES = [
    "launchguard",
    "starlette",
    "fastapi",
    "flask",
    "structlog",
    "prometheus-client",
    "prometheus-fastapi-instrumentator",
    "starlette-exporter",
    "prometheus-flask-exporter",
    "asgi-correlation-id",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-instrumentation-wsgi",
    "google-re2",
]


# ----------------------------------------------------------------------------- guards


def metrics_only_guard() -> Any:
    """Request metrics alone: no query ledger, header lint, budget watch, request ids or
    access log."""
    from launchguard import LaunchGuard

    return LaunchGuard(
        service="bench",
        registry=CollectorRegistry(),
        environ={},
        queries=False,
        request_ids=False,
        access_log=False,
        header_lint=False,
        alerts=False,
    )


def full_guard(**options: Any) -> Any:
    """Everything on (the defaults, unless ``options`` say otherwise), a database hook counted
    as installed; the access log goes wherever logging is configured
    (``_harness.null_logging()``)."""
    from launchguard import LaunchGuard, queries

    if not queries.hooks_installed:
        queries.hook_installed()
    return LaunchGuard(
        service="bench", release="bench-1", registry=CollectorRegistry(), environ={}, **options
    )


class _StructlogPath:
    """Around an app with ``full_guard()``: while a request runs, every access-log line goes
    through structlog and ``configure()``'s stdlib pipeline, as every line did before the direct
    writer (the same bytes), for comparison. It switches the direct writer off and on around the
    call instead of replacing a method, so it works on a compiled build too; the switch itself
    costs two module attribute writes per request."""

    def __init__(self, app: Any) -> None:
        import launchguard.logging as lg_logging

        self.app = app
        self.logging = lg_logging

    def off(self) -> Any:
        direct, self.logging._direct = self.logging._direct, None
        return direct


class StructlogPathAsgi(_StructlogPath):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        direct = self.off()
        try:
            await self.app(scope, receive, send)
        finally:
            self.logging._direct = direct


class StructlogPathWsgi(_StructlogPath):
    """The WSGI one keeps the switch off until the body is closed (the line is written then)."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        direct = self.off()
        try:
            body = self.app(environ, start_response)
            try:
                return list(body)
            finally:
                if hasattr(body, "close"):
                    body.close()
        finally:
            self.logging._direct = direct


# ----------------------------------------------------------------------------- ASGI


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


def otel_providers() -> tuple[Any, Any]:
    """OpenTelemetry SDK providers: spans go through a processor to an exporter that drops
    them; metrics to an in-memory reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def starlette_app(
    middleware: list[Any] | None = None, routes: int = 1, *, first: bool = False
) -> Any:
    """One route matched by the benchmark's requests, among ``routes`` in all: last (the
    router tries every other route first) or, with ``first``, first."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Any) -> Any:
        return PlainTextResponse("ok")

    table = [Route(f"/r{i}/{{item_id}}", item) for i in range(routes - 1)]
    matched = Route("/items/{item_id}", item)
    table = [matched, *table] if first else [*table, matched]
    return Starlette(routes=table, middleware=middleware or [])


ROUTE_COUNTS = (1, 100, 1000)


def route_scaling(rounds: int, n: int, chunks: int) -> None:
    """launchguard's own overhead with 1, 100 and 1,000 routes, the matched route first (so
    the router's work, which is the app's, stays small and the same for every count). Every
    count runs in the same rounds; each variant's overhead is taken from the bare app with the
    same routes in the same round."""
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    apps: dict[str, Any] = {}
    for count in ROUTE_COUNTS:
        apps[f"bare {count}"] = starlette_app(routes=count, first=True)
        for kind, make_guard in (("metrics only", metrics_only_guard), ("full", full_guard)):
            apps[f"{kind} {count}"] = starlette_app(
                [Middleware(LaunchGuardMiddleware, guard=make_guard())], routes=count, first=True
            )
    base = f"bare {ROUTE_COUNTS[0]}"
    raw = h.interleave(apps, time_asgi, rounds, n, baseline=base, chunks=chunks)
    zero = [0.0] * rounds

    def overhead(kind: str, count: int) -> list[float]:
        bare = raw.get(f"bare {count}", zero)
        return [a - b for a, b in zip(raw[f"{kind} {count}"], bare, strict=True)]

    print("\n### ASGI (Starlette), 1, 100 and 1,000 routes, the matched route first\n")
    print(
        "| routes | launchguard metrics only | x 1 route, per round "
        "| launchguard full | x 1 route, per round |"
    )
    print("|---|---|---|---|---|")
    for count in ROUTE_COUNTS:
        cells = []
        for kind in ("metrics only", "full"):
            values = overhead(kind, count)
            ratio = h.per_round_ratio(values, overhead(kind, ROUTE_COUNTS[0]))
            cells += [h.us(statistics.median(values)), f"{ratio:.2f}"]
        print(f"| {count:,} | {' | '.join(cells)} |")


def fastapi_app(middleware: list[Any] | None = None, routes: int = 1) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI(middleware=middleware or [])

    async def item(item_id: int) -> PlainTextResponse:
        return PlainTextResponse("ok")

    for i in range(routes - 1):
        app.add_api_route(f"/r{i}/{{item_id}}", item, methods=["GET"])
    app.add_api_route("/items/{item_id}", item, methods=["GET"])
    return app


def asgi_variants(make: Any = starlette_app, routes: int = 1, peers: bool = True) -> dict[str, Any]:
    """Same app, each variant with one middleware (or none). OpenTelemetry is not among them:
    once it is imported, launchguard looks up the current span of every request (to link
    exemplars and annotate spans), so it runs in a section of its own (``otel_variants``)."""
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    variants: dict[str, Any] = {
        "bare": make(routes=routes),
        "floor": make([Middleware(AsgiFloor, registry=CollectorRegistry())], routes=routes),
        "launchguard (metrics only)": make(
            [Middleware(LaunchGuardMiddleware, guard=metrics_only_guard())], routes=routes
        ),
        "launchguard full": make(
            [Middleware(LaunchGuardMiddleware, guard=full_guard())], routes=routes
        ),
    }
    if peers:
        variants["launchguard full, log via structlog"] = StructlogPathAsgi(
            make([Middleware(LaunchGuardMiddleware, guard=full_guard())], routes=routes)
        )
    from prometheus_fastapi_instrumentator import Instrumentator

    pfi = make(routes=routes)
    Instrumentator(registry=CollectorRegistry()).instrument(pfi)
    variants["prometheus-fastapi-instrumentator"] = pfi
    if not peers:
        return variants
    from asgi_correlation_id import CorrelationIdMiddleware
    from starlette_exporter import PrometheusMiddleware

    variants["starlette-exporter"] = make(
        [Middleware(PrometheusMiddleware, group_paths=True)], routes=routes
    )
    variants["asgi-correlation-id"] = make([Middleware(CorrelationIdMiddleware)], routes=routes)
    return variants


def otel_asgi_variants() -> dict[str, Any]:
    """OpenTelemetry's ASGI middleware with the SDK, next to the floor and launchguard (which
    now also finds the current span of each request, as it would in an app using OTel)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    tracer_provider, meter_provider = otel_providers()
    return {
        "bare": starlette_app(),
        "floor": starlette_app([Middleware(AsgiFloor, registry=CollectorRegistry())]),
        "launchguard full": starlette_app([Middleware(LaunchGuardMiddleware, guard=full_guard())]),
        "OpenTelemetry ASGI (SDK)": starlette_app(
            [
                Middleware(
                    OpenTelemetryMiddleware,
                    tracer_provider=tracer_provider,
                    meter_provider=meter_provider,
                )
            ]
        ),
    }


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/items/7",
    "raw_path": b"/items/7",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 1234),
    "server": ("bench", 80),
}


#: Apps already warmed up (each is warmed once, on its first timing).
_warmed: set[int] = set()
#: One event loop for every ASGI timing, as in a server (made on first use).
_loop: asyncio.AbstractEventLoop | None = None


def time_asgi(app: Any, n: int) -> float:
    """Seconds per request (``_harness.clock``) for ``n`` in-process requests to ``/items/7``
    (the first call for an app first sends it 50 requests to warm caches and lazily built
    middleware stacks)."""
    global _loop
    request = {"type": "http.request", "body": b"", "more_body": False}
    clock = h.clock

    async def receive() -> Any:
        return request

    async def send(message: Any) -> None:
        pass

    async def run() -> float:
        if id(app) not in _warmed:
            _warmed.add(id(app))
            for _ in range(50):
                await app(dict(SCOPE), receive, send)
        start = clock()
        for _ in range(n):
            await app(dict(SCOPE), receive, send)
        return (clock() - start) / n

    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(run())


# ----------------------------------------------------------------------------- WSGI


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


def wsgi_variants() -> dict[str, Any]:
    from prometheus_flask_exporter import PrometheusMetrics

    from launchguard.integrations.flask import init_app

    bare = flask_app()
    floor = flask_app()
    floor.wsgi_app = WsgiFloor(floor.wsgi_app, CollectorRegistry())  # type: ignore[method-assign]
    metrics = flask_app()
    init_app(metrics, metrics_only_guard())
    full = flask_app()
    init_app(full, full_guard())
    before = flask_app()
    init_app(before, full_guard())
    before.wsgi_app = StructlogPathWsgi(before.wsgi_app)  # type: ignore[method-assign]
    pfe = flask_app()
    PrometheusMetrics(pfe, registry=CollectorRegistry())
    return {
        "bare": bare,
        "floor": floor,
        "launchguard (metrics only)": metrics,
        "launchguard full": full,
        "launchguard full, log via structlog": before,
        "prometheus-flask-exporter": pfe,
    }


def otel_wsgi_variants() -> dict[str, Any]:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    from launchguard.integrations.flask import init_app

    floor = flask_app()
    floor.wsgi_app = WsgiFloor(floor.wsgi_app, CollectorRegistry())  # type: ignore[method-assign]
    full = flask_app()
    init_app(full, full_guard())
    otel = flask_app()
    tracer_provider, meter_provider = otel_providers()
    otel.wsgi_app = OpenTelemetryMiddleware(  # type: ignore[method-assign]
        otel.wsgi_app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    return {
        "bare": flask_app(),
        "floor": floor,
        "launchguard full": full,
        "OpenTelemetry WSGI (SDK)": otel,
    }


ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/items/7",
    "QUERY_STRING": "",
    "SERVER_NAME": "bench",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "bench",
    "HTTP_USER_AGENT": "bench",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def time_wsgi(app: Any, n: int) -> float:
    clock = h.clock

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def one() -> None:
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO(b"")
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    if id(app) not in _warmed:
        _warmed.add(id(app))
        for _ in range(50):
            one()
    start = clock()
    for _ in range(n):
        one()
    return (clock() - start) / n


# ----------------------------------------------------------------------------- main

TARGETS_ASGI = [
    ("launchguard (metrics only)", "floor"),
    ("launchguard full", "prometheus-fastapi-instrumentator"),
    ("launchguard full, log via structlog", "prometheus-fastapi-instrumentator"),
]
TARGETS_WSGI = [
    ("launchguard (metrics only)", "floor"),
    ("launchguard full", "prometheus-flask-exporter"),
    ("launchguard full, log via structlog", "prometheus-flask-exporter"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--clock", choices=sorted(h.CLOCKS), default="cpu")
    parser.add_argument("--only", default="asgi,fastapi,wsgi,routes,scaling,otel")
    parser.add_argument(
        "--chunks",
        type=int,
        default=None,
        help="split each round into this many chunks, variants shuffled per chunk",
    )
    args = parser.parse_args()
    h.set_clock(args.clock)
    rounds = args.rounds or (3 if args.quick else 21)
    n = args.requests or (300 if args.quick else 3000)
    chunks = args.chunks or (3 if args.quick else 30)
    parts = set(args.only.split(","))
    h.null_logging()

    print("## Middleware overhead, in-process\n")
    print(f"- machine: {h.machine()}; load average at start {h.load_average()}")
    print(f"- versions: {h.versions(PACKAGES)}")
    print(
        f"- {rounds} rounds x {n} requests per variant; each round in {chunks} chunks, the "
        f"variants in a fresh random order in each chunk; clock: {args.clock} time"
    )
    if "asgi" in parts:
        result = h.interleave(asgi_variants(starlette_app), time_asgi, rounds, n, chunks=chunks)
        h.table("ASGI (Starlette, one route)", result, extra=TARGETS_ASGI)
    if "fastapi" in parts:
        result = h.interleave(asgi_variants(fastapi_app), time_asgi, rounds, n, chunks=chunks)
        h.table("ASGI (FastAPI, one route)", result, extra=TARGETS_ASGI)
    if "wsgi" in parts:
        result = h.interleave(wsgi_variants(), time_wsgi, rounds, n, chunks=chunks)
        h.table("WSGI (Flask, one route)", result, extra=TARGETS_WSGI)
    if "routes" in parts:
        for count in (1, 100, 1000):
            variants = asgi_variants(starlette_app, routes=count, peers=False)
            result = h.interleave(variants, time_asgi, rounds, n, chunks=chunks)
            h.table(
                f"ASGI (Starlette), {count} routes, the matched route last",
                result,
                extra=TARGETS_ASGI[1:2],
            )
    if "scaling" in parts:
        route_scaling(rounds, n, chunks)
    if "otel" in parts:  # last: from here on OpenTelemetry is imported in this process
        result = h.interleave(otel_asgi_variants(), time_asgi, rounds, n, chunks=chunks)
        h.table(
            "ASGI (Starlette) with OpenTelemetry imported: its middleware, and launchguard "
            "looking up the current span",
            result,
        )
        result = h.interleave(otel_wsgi_variants(), time_wsgi, rounds, n, chunks=chunks)
        h.table("WSGI (Flask) with OpenTelemetry imported", result)
    print(f"\n- load average at the end {h.load_average()}")


if __name__ == "__main__":
    main()
