"""How little the full guard's work can cost in pure Python: a hand-written stand-in with no checks.

    python benchmarks/bench_lower_bound.py            # full run (about a minute)
    python benchmarks/bench_lower_bound.py --quick    # smoke run

The "skeleton" middleware does the least form of each job the full guard does per request and
nothing else: it is not a product, it is the bound any pure-Python implementation of those jobs
pays on this machine, measured in place next to the real thing and the peers (same harness,
same app, same rounds as ``bench_middleware.py``). Per request it

- reads the clock at the start and at the last body byte;
- takes a request id from a batch of pre-made hex ids, sets it in a ContextVar (for log lines
  written during the request) and adds it to a copy of the response headers;
- opens a query ledger: a two-slot list in a second ContextVar (statements would count there);
- queues the request's duration and its statement count and time (two ``deque.append``, the
  way launchguard's histograms take observations before folding them in batches);
- looks up a cached header-lint verdict for (route, status) and compares the duration with a
  latency budget;
- writes one JSON access line with the same fields as launchguard's (timestamp, method, route,
  path, status, duration, statements, request id, ...) by one f-string, one ``write`` and one
  ``flush`` to a file on /dev/null, as ``logging.StreamHandler`` does.

It skips what makes launchguard's output correct whatever arrives and however the app is
configured: no redaction of paths, queries or ids, no JSON escaping of odd values, no check that
the logging configuration still sends the line where structlog would, no status or method
normalisation, no bounded route labels, no error handling, no header lint of new header sets.
So launchguard full cannot cost less than the skeleton; if the skeleton alone costs more than
half of a peer's overhead, no pure-Python guard doing these jobs meets that target here.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import _harness as h
import bench_middleware as bm
from prometheus_client import CollectorRegistry

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("rid", default=None)
_ledger: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("led", default=None)


class _Jobs:
    """The per-request jobs both skeletons share (ids, queues, verdicts, the line)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.durations: deque[tuple[tuple[str, str, str], float]] = deque()
        self.statements: deque[tuple[str, int, float]] = deque()
        self.verdicts: dict[tuple[str, int], tuple[str, ...]] = {}
        self.budget = 0.5
        self.sink = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process
        self.second = -1
        self.stamp = ""

    def new_id(self) -> str:
        ids = self.ids
        if not ids:
            text = os.urandom(16 * 256).hex()
            ids.extend(text[i : i + 32] for i in range(0, len(text), 32))
        return ids.pop()

    def record(
        self,
        method: str,
        route: str,
        path: str,
        status: int,
        rid: str,
        start: float,
        end: float,
        ledger: list[float],
    ) -> None:
        duration = end - start
        self.durations.append(((method, route, str(status)), duration))
        self.statements.append((route, int(ledger[0]), ledger[1]))
        if len(self.durations) > 4096:  # kept bounded; folding them is not part of the bound
            self.durations.clear()
            self.statements.clear()
        verdict = self.verdicts.get((route, status))
        if verdict is None:
            verdict = self.verdicts[(route, status)] = ()
        slow = duration > self.budget
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((now - second) * 1e6)
        line = (
            f'{{"timestamp": "{self.stamp}.{micros:06d}Z", "level": "info", '
            f'"logger": "launchguard.access", "event": "request", "method": "{method}", '
            f'"route": "{route}", "path": "{path}", "status": {status}, '
            f'"duration_ms": {round(duration * 1e6) / 1000}, "db_queries": {int(ledger[0])}, '
            f'"db_ms": {round(ledger[1] * 1e6) / 1000}, "request_id": "{rid}", '
            f'"slow": {"true" if slow else "false"}, "release": "bench-1", "service": "bench"}}\n'
        )
        self.sink.write(line)
        self.sink.flush()


class AsgiSkeleton:
    """The full guard's jobs in their least form, for ASGI (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.jobs = _Jobs()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        jobs = self.jobs
        rid = jobs.new_id()
        rid_token = _request_id.set(rid)
        ledger = [0.0, 0.0]
        ledger_token = _ledger.set(ledger)
        status = 500
        end = 0.0

        async def guarded_send(message: Any) -> None:
            nonlocal status, end
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            elif kind == "http.response.body" and not message.get("more_body", False):
                await send(message)
                end = time.perf_counter()
                return
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        finally:
            route = scope.get("route")
            template = route.path if route is not None else "__unmatched__"
            jobs.record(
                scope["method"],
                template,
                scope["path"],
                status,
                rid,
                start,
                end or time.perf_counter(),
                ledger,
            )
            _ledger.reset(ledger_token)
            _request_id.reset(rid_token)


class WsgiSkeleton:
    """The same for WSGI: list bodies pass through, the request is recorded when the app
    returns (the Flask bench app's bodies are complete then)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.jobs = _Jobs()

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        start = time.perf_counter()
        jobs = self.jobs
        rid = jobs.new_id()
        rid_token = _request_id.set(rid)
        ledger = [0.0, 0.0]
        ledger_token = _ledger.set(ledger)
        status = [500]

        def guarded_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(code[:3])
            return start_response(code, [*headers, ("X-Request-ID", rid)], exc_info)

        try:
            body = self.app(environ, guarded_start_response)
        finally:
            rule = environ.get("werkzeug.request")
            url_rule = getattr(rule, "url_rule", None)
            template = url_rule.rule if url_rule is not None else "__unmatched__"
            jobs.record(
                environ["REQUEST_METHOD"],
                template,
                environ["PATH_INFO"],
                status[0],
                rid,
                start,
                time.perf_counter(),
                ledger,
            )
            _ledger.reset(ledger_token)
            _request_id.reset(rid_token)
        return body


def asgi_variants() -> dict[str, Any]:
    from prometheus_fastapi_instrumentator import Instrumentator
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    pfi = bm.starlette_app()
    Instrumentator(registry=CollectorRegistry()).instrument(pfi)
    return {
        "bare": bm.starlette_app(),
        "floor": bm.starlette_app([Middleware(bm.AsgiFloor, registry=CollectorRegistry())]),
        "skeleton (the full guard's jobs, no checks)": bm.starlette_app([Middleware(AsgiSkeleton)]),
        "launchguard full": bm.starlette_app(
            [Middleware(LaunchGuardMiddleware, guard=bm.full_guard())]
        ),
        "prometheus-fastapi-instrumentator": pfi,
    }


def wsgi_variants() -> dict[str, Any]:
    from prometheus_flask_exporter import PrometheusMetrics

    from launchguard.integrations.flask import init_app

    floor = bm.flask_app()
    floor.wsgi_app = bm.WsgiFloor(floor.wsgi_app, CollectorRegistry())
    skeleton = bm.flask_app()
    skeleton.wsgi_app = WsgiSkeleton(skeleton.wsgi_app)
    full = bm.flask_app()
    init_app(full, bm.full_guard())
    pfe = bm.flask_app()
    PrometheusMetrics(pfe, registry=CollectorRegistry())
    return {
        "bare": bm.flask_app(),
        "floor": floor,
        "skeleton (the full guard's jobs, no checks)": skeleton,
        "launchguard full": full,
        "prometheus-flask-exporter": pfe,
    }


SKELETON = "skeleton (the full guard's jobs, no checks)"


def main() -> None:
    run = h.in_process_run(
        __doc__, "The full guard's jobs with no checks: a lower bound, in-process", 21, bm.PACKAGES
    )
    if "asgi" in run.only:
        compare(
            "ASGI (Starlette, one route)",
            asgi_variants(),
            bm.time_asgi,
            "prometheus-fastapi-instrumentator",
            run,
        )
    if "wsgi" in run.only:
        compare(
            "WSGI (Flask, one route)",
            wsgi_variants(),
            bm.time_wsgi,
            "prometheus-flask-exporter",
            run,
        )
    print(f"\n- load average at the end {h.load_average()}")


def compare(title: str, variants: dict[str, Any], timer: Any, peer: str, run: h.Run) -> None:
    """One interleaved run of ``variants`` and its table, with the ratios to ``peer``."""
    result = h.interleave(variants, timer, run.rounds, run.requests, chunks=run.chunks)
    extra = [(SKELETON, peer), ("launchguard full", peer), ("launchguard full", SKELETON)]
    h.table(title, result, extra=extra)


if __name__ == "__main__":
    main()
