"""More faults the host app must survive: an OpenTelemetry exporter that hangs (under the batch
and the simple span processor), a database that drops mid-request under Django, psycopg's async
connection and asyncpg on its own, and a Sentry sink that accepts connections and never answers.

Real parts throughout (uvicorn, a threaded WSGI server, the OpenTelemetry SDK and its ASGI
instrumentation, Django, psycopg, asyncpg, sentry-sdk, PostgreSQL); no mocks. The helpers are
those of ``tests/test_reliability.py``; RELIABILITY.md lists what each test proves.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard

from .helpers import PG_DSN, UvicornThread, require_service, scrape, value, wait_for
from .test_reliability import (
    COUNT,
    INTERNAL,
    Ledgers,
    Outermost,
    assert_hello,
    hello,
    terminate_backend,
    traced_app,
    wsgi_server,
)
from .test_reliability import ledgers as ledgers  # a fixture

ROOT = Path(__file__).resolve().parent.parent
DB_QUERIES = "launchguard_db_queries_per_request_sum"
BREACHED = "launchguard_route_budget_breached"


# ----------------------------------------------------------------------------- OpenTelemetry


class HangingExporter(SpanExporter):
    """A collector that takes ``hang`` seconds to answer each export (it succeeds in the end).

    It waits on an event rather than sleeping, so the test can let it go at teardown."""

    def __init__(self, hang: float) -> None:
        self.hang = hang
        self.release = threading.Event()
        self.entered = threading.Event()
        self.busy = False
        #: (thread, span names) of every export, in order.
        self.calls: list[tuple[threading.Thread, list[str]]] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.calls.append((threading.current_thread(), [span.name for span in spans]))
        self.busy = True
        self.entered.set()
        self.release.wait(self.hang)
        self.busy = False
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def span_names(self) -> list[str]:
        return [name for _, names in self.calls for name in names]


def assert_charged(response: httpx.Response) -> None:
    """The traced app's own response, untouched (plus the request id the guard echoes)."""
    assert (response.status_code, response.text, response.headers["x-app"]) == (200, "charged", "1")
    assert len(response.headers["x-request-id"]) == 32


def timed_from(url: str, started: float) -> tuple[httpx.Response, float]:
    """GET ``url`` on a fresh connection; (response, seconds from ``started`` to its end)."""
    response = httpx.get(url, timeout=60)
    return response, time.perf_counter() - started


#: The spans the ASGI instrumentation and the app end for one GET /charge, in order: the app's
#: own span, one span per ``send`` (response start, body), the server span.
SPANS_PER_REQUEST = ["charge", "GET /charge http send", "GET /charge http send", "GET /charge"]


@pytest.mark.slow
class TestOtelExporterHangs:
    def test_batch_processor_never_waits(self, registry: CollectorRegistry) -> None:
        """BatchSpanProcessor with an exporter that takes 3 s an export, behind
        RedactingSpanExporter, the ASGI instrumentation and the app's own span, under uvicorn:
        while the processor's thread is stuck in an export, responses come at once and are the
        app's; the spans are all exported once the collector answers; nothing is counted."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from launchguard.integrations.otel import RedactingSpanExporter

        hanging = HangingExporter(hang=3.0)
        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(RedactingSpanExporter(hanging), schedule_delay_millis=10)
        )
        try:
            with UvicornThread(traced_app(registry, provider)) as server:
                url = server.url + "/charge"
                assert_charged(httpx.get(url, timeout=60))
                assert hanging.entered.wait(10)  # the processor's thread is now in the export
                timings = [timed_from(url, time.perf_counter()) for _ in range(5)]
                still_hanging = hanging.busy
        finally:
            hanging.release.set()
            provider.shutdown()  # exports what is queued, now that the collector answers
        assert still_hanging  # every response below came while the export hung
        for response, seconds in timings:
            assert_charged(response)
            assert seconds < 0.5
        threads = {thread for thread, _ in hanging.calls}
        assert server.thread not in threads  # never in the server's (the event loop's) thread
        assert sorted(hanging.span_names()) == sorted(SPANS_PER_REQUEST * 6)
        samples = scrape(registry)
        assert value(samples, COUNT, http_response_status_code="200") == 6
        assert value(samples, INTERNAL) == 0

    def test_simple_processor_exports_in_the_event_loop(self, registry: CollectorRegistry) -> None:
        """SimpleSpanProcessor exports each span as it ends, in the thread that ends it: under
        uvicorn, the event loop's. With an exporter taking 0.4 s an export, behind
        RedactingSpanExporter, the responses are still the app's, but late: the ASGI
        instrumentation ends a span for each message before passing it on, so a GET /charge
        reaches the client after 3 exports (the app's span, then one span per send: response
        start, body); the server span is exported after the body, still in the event loop. A
        request arriving meanwhile waits for the first one's 4 exports and its own 3, and the
        guard's recorded duration includes all 4 (it ends when the last send returns)."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from launchguard.integrations.otel import RedactingSpanExporter

        hang = 0.4
        hanging = HangingExporter(hang)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(hanging)))
        try:
            with (
                UvicornThread(traced_app(registry, provider)) as server,
                ThreadPoolExecutor(2) as pool,
            ):
                url = server.url + "/charge"
                started = time.perf_counter()
                first = pool.submit(timed_from, url, started)
                assert hanging.entered.wait(10)  # the first request's first export is running
                second = pool.submit(timed_from, url, started)
                (first_response, first_seconds), (second_response, second_seconds) = (
                    first.result(),
                    second.result(),
                )
        finally:
            hanging.release.set()
            provider.shutdown()
        assert_charged(first_response)
        assert_charged(second_response)
        assert {thread for thread, _ in hanging.calls} == {server.thread}  # the event loop's
        assert hanging.span_names() == SPANS_PER_REQUEST * 2  # one request after the other
        assert 3 * hang <= first_seconds < 4 * hang + 1.0
        assert second_seconds >= 7 * hang  # the first request's 4 exports, then its own 3
        samples = scrape(registry)
        assert value(samples, COUNT, http_response_status_code="200") == 2
        assert value(samples, COUNT.replace("_count", "_sum")) >= 2 * 4 * hang
        assert value(samples, INTERNAL) == 0


# ----------------------------------------------------------------------------- PostgreSQL


@dataclass
class DropRun:
    """What one /q/drop then /q/ok sequence gave: the responses, the exceptions the app
    raised, and the exceptions that reached the server."""

    dropped: httpx.Response
    after: httpx.Response
    raised: list[BaseException] = field(default_factory=list)
    reached_server: list[BaseException] = field(default_factory=list)

    def answers(self) -> list[tuple[int, str]]:
        return [(r.status_code, r.text) for r in (self.dropped, self.after)]


def drop_then_ok(app: Any, raised: list[BaseException]) -> DropRun:
    """Serve ``app`` under uvicorn (lifespan on) and GET /q/drop, then /q/ok, each on a fresh
    connection (uvicorn closes one whose app raised)."""
    seen = Outermost()

    async def outermost(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            seen.raised.append(exc)
            raise

    no_reuse = httpx.Limits(max_keepalive_connections=0)
    with (
        UvicornThread(outermost, lifespan="on") as server,
        httpx.Client(base_url=server.url, limits=no_reuse, timeout=30) as client,
    ):
        dropped = client.get("/q/drop")
        after = client.get("/q/ok")
    return DropRun(dropped, after, raised, seen.raised)


def bare_and_guarded(
    make_app: Callable[[bool, list[BaseException]], Any], registry: CollectorRegistry
) -> tuple[DropRun, DropRun]:
    """The same scenario without launchguard at all (no guard, no database hook) and with
    both."""
    raised: list[BaseException] = []
    bare = drop_then_ok(make_app(False, raised), raised)
    guard = LaunchGuard(registry=registry, environ={}, access_log=False, header_lint=False)
    raised = []
    guarded = drop_then_ok(guard.asgi(make_app(True, raised)), raised)
    return bare, guarded


def assert_same_as_without_the_guard(bare: DropRun, guarded: DropRun) -> BaseException:
    """Starlette's own 500, then a working request, with and without the guard; the app's
    exception reaches the server as the very object it raised. Returns that exception."""
    assert bare.answers() == guarded.answers() == [(500, "Internal Server Error"), (200, "ok")]
    assert "x-request-id" in guarded.dropped.headers  # the guard did see the request
    (bare_exc,) = bare.raised
    (exc,) = guarded.raised
    assert bare.reached_server == [bare_exc]
    assert guarded.reached_server == [exc]  # the very object, through the guard
    return exc


def assert_recorded(registry: CollectorRegistry, exc: BaseException, statements: int) -> None:
    """The guard recorded the failed request (a 500 with the exception's class) and the good
    one, with ``statements`` statements in all, and nothing as an internal error."""
    samples = scrape(registry)
    assert (
        value(samples, COUNT, http_route="/q/{how}", http_response_status_code="500")
        == value(samples, COUNT, http_route="/q/{how}", error_type=type(exc).__qualname__)
        == 1
    )
    assert value(samples, COUNT, http_route="/q/{how}", http_response_status_code="200") == 1
    assert value(samples, DB_QUERIES, http_route="/q/{how}") == statements
    assert value(samples, INTERNAL) == 0


@pytest.mark.slow
@pytest.mark.postgres
class TestDatabaseDropsMidRequest:
    def test_psycopg_async_under_uvicorn(
        self, registry: CollectorRegistry, ledgers: Ledgers
    ) -> None:
        """psycopg's AsyncConnection in a Starlette app under uvicorn, the connection killed
        between two statements: the same 500 and exception as without the guard, the failed
        statement counted, nothing counted as an internal error, the next request works."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        import psycopg

        from launchguard.integrations.psycopg import instrument_connection

        def make_app(instrumented: bool, raised: list[BaseException]) -> Any:
            async def query(request: Request) -> Response:
                conn = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)
                if instrumented:
                    instrument_connection(conn)
                async with conn:
                    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
                    assert row is not None
                    if request.path_params["how"] == "drop":
                        await asyncio.to_thread(terminate_backend, row[0])
                    try:
                        await conn.execute("SELECT 1")
                    except psycopg.OperationalError as exc:
                        raised.append(exc)
                        raise
                return PlainTextResponse("ok")

            @asynccontextmanager
            async def lifespan(app: Any) -> AsyncIterator[None]:
                if instrumented:  # hooks in before any request, as an app's startup does
                    conn = await psycopg.AsyncConnection.connect(PG_DSN)
                    await instrument_connection(conn).close()
                yield

            return Starlette(routes=[Route("/q/{how}", query)], lifespan=lifespan)

        bare, guarded = bare_and_guarded(make_app, registry)
        exc = assert_same_as_without_the_guard(bare, guarded)
        assert type(exc) is type(bare.raised[0]) is psycopg.errors.AdminShutdown
        assert ledgers.by_route("/q/{how}") == [(2, 1), (2, 0)]
        assert_recorded(registry, exc, statements=4)

    @pytest.mark.parametrize(
        ("client", "hook", "ledgers_seen"),
        [
            ("connect", "GuardedConnection", [(2, 1), (2, 0)]),
            # The pool resets a connection on release with one more statement: counted.
            ("pool", "GuardedConnection", [(2, 1), (3, 0)]),
            # asyncpg drops a connection's query loggers when it is lost, before the failed
            # statement is logged: that statement is not counted.
            ("connect", "instrument_connection", [(1, 0), (2, 0)]),
            ("pool", "instrument_connection", [(1, 0), (3, 0)]),
        ],
        ids=[
            "connect-GuardedConnection",
            "pool-GuardedConnection",
            "connect-logger",
            "pool-logger",
        ],
    )
    def test_asyncpg_under_uvicorn(
        self,
        client: str,
        hook: str,
        ledgers_seen: list[tuple[int, int]],
        registry: CollectorRegistry,
        ledgers: Ledgers,
    ) -> None:
        """asyncpg on its own (a connection per request, or a pool of one) in a Starlette app
        under uvicorn, the connection killed between two statements: the same 500 and the same
        exception as without the guard, the exception reaches the server unchanged, nothing is
        counted as an internal error, the next request works. ``GuardedConnection`` counts the
        failed statement; asyncpg's query logger (``instrument_connection``) never reports it."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        import asyncpg

        from launchguard.integrations import asyncpg as lg_asyncpg

        def make_app(instrumented: bool, raised: list[BaseException]) -> Any:
            options: dict[str, Any] = {}
            if instrumented and hook == "GuardedConnection":
                options["connection_class"] = lg_asyncpg.GuardedConnection

            async def init(conn: Any) -> None:
                if instrumented and hook == "instrument_connection":
                    lg_asyncpg.instrument_connection(conn)

            @asynccontextmanager
            async def connection() -> AsyncIterator[Any]:
                if client == "pool":
                    async with state["pool"].acquire() as conn:
                        yield conn
                    return
                conn = await asyncpg.connect(PG_DSN, **options)
                await init(conn)
                try:
                    yield conn
                finally:
                    await conn.close()

            async def query(request: Request) -> Response:
                async with connection() as conn:
                    pid = await conn.fetchval("SELECT pg_backend_pid()")
                    if request.path_params["how"] == "drop":
                        # In the event loop's thread on purpose: asyncpg cannot read the
                        # server's goodbye before the next statement is sent, so the failure
                        # is always the same (otherwise its class varies with timing).
                        terminate_backend(pid)
                    try:
                        await conn.fetchval("SELECT 1")
                    except Exception as exc:
                        raised.append(exc)
                        raise
                return PlainTextResponse("ok")

            state: dict[str, Any] = {}

            @asynccontextmanager
            async def lifespan(app: Any) -> AsyncIterator[None]:
                if instrumented:  # hooks in before any request, as an app's startup does
                    conn = await asyncpg.connect(PG_DSN, **options)
                    await init(conn)
                    await conn.close()
                if client == "pool":
                    state["pool"] = await asyncpg.create_pool(
                        PG_DSN, min_size=1, max_size=1, init=init, **options
                    )
                yield
                if client == "pool":
                    await state["pool"].close()

            return Starlette(routes=[Route("/q/{how}", query)], lifespan=lifespan)

        bare, guarded = bare_and_guarded(make_app, registry)
        exc = assert_same_as_without_the_guard(bare, guarded)
        assert type(exc) is type(bare.raised[0]) is asyncpg.ConnectionDoesNotExistError
        assert ledgers.by_route("/q/{how}") == ledgers_seen
        assert_recorded(registry, exc, statements=sum(count for count, _ in ledgers_seen))

    def test_django_under_wsgi_and_asgi(self) -> None:
        """Django on PostgreSQL, the connection killed between two statements of a view, under
        a threaded WSGI server and under uvicorn, without and with LaunchGuardMiddleware:
        Django's own 500 page and the same exception object in Django's handler either way,
        the failed statement counted, the request recorded as a 500 with the exception's
        class, nothing counted as an internal error, the next request works. Runs in its own
        process (Django's settings are per process): see ``django_child``."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        done = subprocess.run(
            [
                sys.executable,
                "-W",
                "error",
                "-c",
                "from tests.test_reliability_faults import django_child; django_child()",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, LAUNCHGUARD_TEST_PG=PG_DSN),
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        runs = json.loads(done.stdout.splitlines()[-1])
        assert set(runs) == {"wsgi bare", "wsgi guarded", "asgi bare", "asgi guarded"}
        for name, run in runs.items():
            (status, page), after = run["answers"]
            assert (status, after) == (500, [200, "ok"]), name
            assert "<h1>Server Error (500)</h1>" in page, name  # Django's own error page
            assert run["raised"] == ["django.db.utils.OperationalError"], name
            assert run["cause"] == ["psycopg.errors.AdminShutdown"], name
            assert run["handled_is_raised"] == [True], name  # the very object
        for server in ("wsgi", "asgi"):
            run, bare = runs[f"{server} guarded"], runs[f"{server} bare"]
            assert run["answers"] == bare["answers"], server  # the same pages, byte for byte
            assert run["request_id"], server
            assert run["ledgers"] == [[2, 1], [2, 0]], server
            assert run["count_500_operational_error"] == run["count_500"] == 1, server
            assert run["count_200"] == 1, server
            assert run["db_queries"] == 4, server
            assert run["internal_errors"] == 0, server
            assert not bare["request_id"], server


def django_child() -> None:
    """In a fresh process: Django on PostgreSQL (the ``test`` database, no tables needed), one
    view that may kill its own connection; each server without then with the guard. Prints the
    facts as one JSON line."""
    from urllib.parse import urlsplit

    import django
    from django.conf import settings

    from launchguard import _internal
    from launchguard.queries import QueryLedger, listening

    _internal.RERAISE = True  # as in the test suite: an internal error would show
    dsn = urlsplit(PG_DSN)
    raised: list[BaseException] = []
    handled: list[BaseException | None] = []

    def query(request: Any, how: str) -> Any:
        from django.db import DatabaseError, connection
        from django.http import HttpResponse

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        if how == "drop":
            terminate_backend(pid)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            raised.append(exc)
            raise
        return HttpResponse("ok")

    from django.urls import path

    class Urls:
        urlpatterns = [path("q/<str:how>", query)]

    settings.configure(
        DEBUG=False,
        SECRET_KEY="not-a-secret-for-this-test-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=Urls,
        MIDDLEWARE=[],
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": dsn.path.lstrip("/"),
                "USER": dsn.username or "",
                "PASSWORD": dsn.password or "",
                "HOST": dsn.hostname or "",
                "PORT": str(dsn.port or ""),
            }
        },
    )
    django.setup()
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import got_request_exception

    def on_exception(sender: Any, **kwargs: Any) -> None:
        handled.append(sys.exc_info()[1])  # what Django's handler is turning into a 500

    got_request_exception.connect(on_exception, weak=False)
    runs: dict[str, dict[str, Any]] = {}
    for mode in ("bare", "guarded"):
        for server in ("wsgi", "asgi"):
            registry = CollectorRegistry()
            settings.MIDDLEWARE = (
                ["launchguard.integrations.django.LaunchGuardMiddleware"]
                if mode == "guarded"
                else []
            )
            settings.LAUNCHGUARD = {
                "registry": registry,
                "access_log": False,
                "header_lint": False,
            }
            raised.clear()
            handled.clear()
            seen: list[QueryLedger] = []
            with listening(seen.append):
                if server == "wsgi":
                    with wsgi_server(WSGIHandler()) as url:
                        answers = [httpx.get(url + p, timeout=30) for p in ("/q/drop", "/q/ok")]
                else:
                    with UvicornThread(ASGIHandler()) as uvicorn:
                        answers = [
                            httpx.get(uvicorn.url + p, timeout=30) for p in ("/q/drop", "/q/ok")
                        ]
            samples = scrape(registry)
            runs[f"{server} {mode}"] = {
                "answers": [[r.status_code, r.text] for r in answers],
                "request_id": answers[0].headers.get("x-request-id"),
                "raised": [f"{type(e).__module__}.{type(e).__qualname__}" for e in raised],
                "cause": [
                    f"{type(e.__cause__).__module__}.{type(e.__cause__).__qualname__}"
                    for e in raised
                ],
                "handled_is_raised": [h is r for h, r in zip(handled, raised, strict=True)],
                "ledgers": [[x.count, x.errors] for x in seen if x.route == "/q/{how}"],
                "count_500": value(samples, COUNT, http_response_status_code="500"),
                "count_500_operational_error": value(
                    samples, COUNT, http_route="/q/{how}", error_type="OperationalError"
                ),
                "count_200": value(
                    samples, COUNT, http_route="/q/{how}", http_response_status_code="200"
                ),
                "db_queries": value(samples, DB_QUERIES, http_route="/q/{how}"),
                "internal_errors": value(samples, INTERNAL),
            }
    print(json.dumps(runs))


# ----------------------------------------------------------------------------- Sentry


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection, reads what it is sent and
    never answers: a Sentry ingest behind a stuck proxy."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.received = bytearray()
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(0.05):
                    if key.fileobj is self.listener:
                        conn, _ = self.listener.accept()
                        self._connections.append(conn)
                        self.accepted += 1
                        selector.register(conn, selectors.EVENT_READ)
                        continue
                    peer: Any = key.fileobj
                    data = peer.recv(65536)
                    if data:
                        self.received += data
                    else:
                        selector.unregister(peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._connections:
            conn.close()
        self.listener.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    sink = BlackHole()
    yield sink
    sink.close()


@pytest.mark.slow
def test_sentry_sink_accepts_and_never_answers(
    black_hole: BlackHole, registry: CollectorRegistry
) -> None:
    """Real sentry-sdk (every request traced, every error captured) sending to a sink that
    accepts the connection and never answers, and the guard's slow-endpoint alert firing:
    every response is the app's and comes at once, the alert is captured in a request that
    does not wait for it, and nothing is counted as an internal error."""
    import sentry_sdk
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

    from launchguard.integrations import sentry as lg_sentry

    captured: list[dict[str, Any]] = []

    def user_hook(event: Any, hint: Any) -> Any:
        captured.append(event)
        return event

    async def boom(request: Request) -> Response:
        raise RuntimeError("payment failed")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.012)
        return PlainTextResponse("slow")

    sentry_sdk.init(
        dsn=f"http://public@127.0.0.1:{black_hole.port}/1",
        default_integrations=False,
        traces_sample_rate=1.0,
        before_send=user_hook,
        shutdown_timeout=0.2,
    )
    timings: list[tuple[str, float]] = []
    try:
        assert lg_sentry.install()
        guard = LaunchGuard(
            registry=registry,
            environ={},
            header_lint=False,
            access_log=False,
            route_budgets={"/slow": 0.005},
            budget_min_samples=5,
        )
        assert guard.budgets is not None
        guard.budgets.judge_interval = 0.0  # judge on every request: the test need not wait
        app = SentryAsgiMiddleware(
            guard.asgi(
                Starlette(routes=[Route("/", hello), Route("/boom", boom), Route("/slow", slow)])
            )
        )
        # uvicorn closes a connection whose app raised: one connection per request.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with UvicornThread(app) as server, httpx.Client(limits=no_reuse, timeout=60) as client:
            for path in ["/", "/boom", "/slow"] * 8:
                started = time.perf_counter()
                response = client.get(server.url + path)
                timings.append((path, time.perf_counter() - started))
                if path == "/":
                    assert_hello(response)
                elif path == "/slow":
                    assert (response.status_code, response.text) == (200, "slow")
                else:
                    assert (response.status_code, response.text) == (500, "Internal Server Error")
            # The transport is stuck on the sink now: connected, its envelope sent, no answer.
            wait_for(lambda: black_hole.received.startswith(b"POST /api/1/envelope/"))
            assert black_hole.accepted >= 1
    finally:
        sentry_sdk.get_client().close()  # shutdown_timeout: 0.2 s
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().clear()
    assert max(seconds for _, seconds in timings) < 1.0
    errors = [e for e in captured if e.get("exception")]
    assert [e["exception"]["values"][-1]["value"] for e in errors] == ["payment failed"] * 8
    alerts = [e for e in captured if e.get("tags", {}).get("launchguard.alert") == "slow-endpoint"]
    assert [e["fingerprint"] for e in alerts] == [["launchguard", "slow-endpoint", "GET", "/slow"]]
    samples = scrape(registry)
    assert value(samples, BREACHED, http_route="/slow") == 1
    assert value(samples, COUNT, http_response_status_code="500") == 8
    assert value(samples, INTERNAL) == 0
