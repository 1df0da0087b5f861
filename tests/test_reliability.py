"""The host app keeps working when what the guard writes to fails: log sinks that raise or
block, a Sentry transport that is down or slow, an OpenTelemetry exporter that fails, a database
that drops mid-request; 1 GiB bodies stream in constant memory; what threads see of a request.

Real parts throughout (uvicorn, a threaded WSGI server, sentry-sdk, the OpenTelemetry SDK,
PostgreSQL); the few stand-ins for a fault that cannot be caused otherwise say so.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import queue
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from logging.handlers import QueueHandler, QueueListener
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import launchguard.logging as lg_logging
from launchguard import LaunchGuard, _internal
from launchguard.integrations import sqlite3 as guarded_sqlite3
from launchguard.logstream import BackgroundStream
from launchguard.queries import QueryLedger, listening

from .asgi_util import body_of, call, status_of
from .helpers import PG_DSN, UvicornThread, free_port, require_service, scrape, value

INTERNAL = "launchguard_internal_errors_total"
COUNT = "http_server_request_duration_seconds_count"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def production_mode() -> Iterator[None]:
    """Internal errors swallowed, as in production (the suite re-raises them otherwise)."""
    _internal.RERAISE = False
    yield
    _internal.RERAISE = True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Root handlers, level and structlog restored after the test; the test's HTTP client
    (in this process) kept out of the log sinks under test, so that only the server logs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    client = logging.getLogger("httpx")
    client_level = client.level
    client.setLevel(logging.WARNING)
    yield
    client.setLevel(client_level)
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """A real threaded WSGI server (wsgiref) on 127.0.0.1; yields its URL."""
    server = make_server("127.0.0.1", 0, app, _ThreadingWSGIServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello", headers={"X-App": "1"})


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "1")])
    return [b"hello"]


@contextmanager
def serve(kind: str, registry: CollectorRegistry, **options: Any) -> Iterator[str]:
    """The hello app behind a guard, on a real server: ``uvicorn`` (ASGI) or ``wsgi``."""
    guard = LaunchGuard(registry=registry, environ={}, **options)
    if kind == "uvicorn":
        with UvicornThread(guard.asgi(Starlette(routes=[Route("/", hello)]))) as server:
            yield server.url
    else:
        with wsgi_server(guard.wsgi(wsgi_hello)) as url:
            yield url


def assert_hello(response: httpx.Response) -> None:
    """The app's own response, untouched (plus the request id the guard echoes)."""
    assert (response.status_code, response.text, response.headers["x-app"]) == (200, "hello", "1")
    assert len(response.headers["x-request-id"]) == 32


def timed_get(url: str) -> tuple[httpx.Response, float]:
    """One request on a fresh connection; (response, seconds to the complete response)."""
    started = time.perf_counter()
    response = httpx.get(url, timeout=60)
    return response, time.perf_counter() - started


# ----------------------------------------------------------------------------- log sinks


class RaisingHandler(logging.Handler):
    """A handler whose ``emit`` raises for every record (not the stdlib convention of calling
    ``handleError``): a third-party sink whose backend is down."""

    def emit(self, record: logging.LogRecord) -> None:
        raise ConnectionError("log backend down")


class BrokenStream(io.StringIO):
    """A stream that fails as a closed pipe does."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


class SlowStream(io.StringIO):
    """A stream that takes 2 s per line: a stuck log collector."""

    def write(self, text: str) -> int:
        time.sleep(2)
        return super().write(text)


class GateStream(io.StringIO):
    """A stream whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.open.wait(30)
        return super().write(text)


SERVERS = ["uvicorn", "wsgi"]


@pytest.mark.slow
class TestLogSinkRaises:
    @pytest.mark.parametrize("server", SERVERS)
    def test_handler_that_raises_is_counted(
        self, server: str, registry: CollectorRegistry, production_mode: None, restore_logging: None
    ) -> None:
        """A handler whose emit raises: same responses; counted as component access_log."""
        lg_logging.configure(stream=io.StringIO(), json=True)
        logging.getLogger().addHandler(RaisingHandler())
        with serve(server, registry, header_lint=False) as url:
            for _ in range(3):
                assert_hello(timed_get(url)[0])
        samples = scrape(registry)
        assert value(samples, INTERNAL, component="access_log") == 3
        assert value(samples, INTERNAL) == 3
        assert value(samples, COUNT) == 3

    @pytest.mark.parametrize("server", SERVERS)
    def test_stream_that_fails_goes_to_handle_error(
        self,
        server: str,
        registry: CollectorRegistry,
        production_mode: None,
        restore_logging: None,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A failing stream under configure(): stdlib logging's handleError reports it on
        stderr, as for any stdlib handler; the response is the same and nothing is counted."""
        lg_logging.configure(stream=BrokenStream(), json=True)
        with serve(server, registry, header_lint=False) as url:
            assert_hello(timed_get(url)[0])
        assert "--- Logging error ---" in capsys.readouterr().err
        assert value(scrape(registry), INTERNAL) == 0


@pytest.mark.slow
class TestLogSinkBlocks:
    @pytest.mark.parametrize("sink", ["configure's stream", "own handler"])
    def test_asgi_client_has_its_response_but_the_loop_waits(
        self, sink: str, registry: CollectorRegistry, restore_logging: None
    ) -> None:
        """A log stream or handler taking 2 s a line, written directly (the default): the
        client whose request wrote the line already has its complete response, but the event
        loop is held while the line is written, so a request arriving meanwhile waits."""

        class Blocking(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                time.sleep(2)

        if sink == "own handler":
            lg_logging.configure(stream=io.StringIO(), json=True)
            logging.getLogger().addHandler(Blocking())
        else:
            lg_logging.configure(stream=SlowStream(), json=True)
        with serve("uvicorn", registry, header_lint=False) as url:
            first, first_seconds = timed_get(url)
            second, second_seconds = timed_get(url)
        assert_hello(first)
        assert_hello(second)
        assert first_seconds < 1.0
        assert second_seconds > 1.0  # waited for the first request's line

    def test_wsgi_list_body_waits_for_the_line(
        self, registry: CollectorRegistry, restore_logging: None
    ) -> None:
        """WSGI: a list body is recorded (and logged) before the server sends it, so with a
        stream written directly the response itself waits for the line."""
        lg_logging.configure(stream=SlowStream(), json=True)
        with serve("wsgi", registry, header_lint=False) as url:
            response, seconds = timed_get(url)
        assert_hello(response)
        assert seconds > 1.5

    @pytest.mark.parametrize("server", SERVERS)
    def test_background_stream_never_waits(
        self, server: str, registry: CollectorRegistry, restore_logging: None
    ) -> None:
        """configure(stream=BackgroundStream(...)): with the stream taking 2 s a line, every
        response comes at once; the lines follow, in order."""
        slow = SlowStream()
        stream = BackgroundStream(slow)
        lg_logging.configure(stream=stream, json=True)
        with serve(server, registry, header_lint=False) as url:
            timings = [timed_get(url) for _ in range(3)]
        for response, seconds in timings:
            assert_hello(response)
            assert seconds < 1.0
        assert stream.drain(30)
        written = [json.loads(line) for line in slow.getvalue().splitlines()]
        assert [line["request_id"] for line in written] == [
            response.headers["x-request-id"] for response, _ in timings
        ]
        assert stream.dropped == 0
        stream.close()

    def test_background_stream_drops_and_counts_when_full(
        self, registry: CollectorRegistry, restore_logging: None
    ) -> None:
        """A stream stuck for good and a queue of 2 lines: requests go on, the surplus lines
        are dropped and counted, and a warning says how many once the stream moves."""
        gate = GateStream()
        stream = BackgroundStream(gate, max_lines=2)
        lg_logging.configure(stream=stream, json=True)
        try:
            with serve("uvicorn", registry, header_lint=False) as url:
                assert_hello(timed_get(url)[0])
                assert gate.entered.wait(10)  # the writer thread is stuck on the first line
                for _ in range(5):
                    response, seconds = timed_get(url)
                    assert_hello(response)
                    assert seconds < 1.0
            assert stream.dropped == 3  # 1 being written, 2 queued, 3 dropped
        finally:
            gate.open.set()
        assert stream.drain(30)
        written = [json.loads(line) for line in gate.getvalue().splitlines()]
        assert [line["logger"] for line in written] == ["launchguard.access"] * 3 + ["launchguard"]
        assert written[-1]["event"].startswith(
            "launchguard: log lines dropped: 3 since the last report, 3 in all"
        )
        stream.close()

    def test_own_blocking_handler_behind_a_queue_handler(
        self, registry: CollectorRegistry, restore_logging: None
    ) -> None:
        """A handler of your own that blocks (2 s a record): put it behind the stdlib's
        QueueHandler/QueueListener and requests no longer wait for it."""
        seen: list[str] = []

        class Blocking(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                time.sleep(2)
                seen.append(record.name)

        lg_logging.configure(stream=io.StringIO(), json=True)
        records: queue.Queue[logging.LogRecord] = queue.Queue()
        listener = QueueListener(records, Blocking())
        logging.getLogger().addHandler(QueueHandler(records))
        listener.start()
        try:
            with serve("uvicorn", registry, header_lint=False) as url:
                timings = [timed_get(url) for _ in range(2)]
        finally:
            listener.stop()  # writes out what is queued
        for response, seconds in timings:
            assert_hello(response)
            assert seconds < 1.0
        assert seen == ["launchguard.access"] * 2


# ----------------------------------------------------------------------------- Sentry


class SlowSink(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint taking 5 s per envelope."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        SlowSink.received += 1
        time.sleep(5)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=["closed port", "slow sink"])
def sentry_dsn(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, DSN): a DSN whose transport refuses connections, or answers 5 s late."""
    if request.param == "closed port":
        yield request.param, f"http://public@127.0.0.1:{free_port()}/1"
        return
    SlowSink.received = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield request.param, f"http://public@127.0.0.1:{server.server_port}/1"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_sentry_transport_down_or_slow(
    sentry_dsn: tuple[str, str], registry: CollectorRegistry, log_buffer: io.StringIO
) -> None:
    """Real sentry-sdk, every request traced and every error captured, with a transport that
    cannot connect or takes 5 s an envelope: responses and latency are unaffected."""
    import sentry_sdk
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

    from launchguard.integrations import sentry as lg_sentry

    captured: list[str] = []

    def user_hook(event: Any, hint: Any) -> Any:
        captured.append(event["exception"]["values"][-1]["value"])
        return event

    async def boom(request: Request) -> Response:
        raise RuntimeError("payment failed")

    kind, dsn = sentry_dsn
    sentry_sdk.init(
        dsn=dsn, default_integrations=False, traces_sample_rate=1.0, before_send=user_hook
    )
    try:
        assert lg_sentry.install()
        guard = LaunchGuard(registry=registry, environ={}, header_lint=False)
        app = SentryAsgiMiddleware(
            guard.asgi(Starlette(routes=[Route("/", hello), Route("/boom", boom)]))
        )
        timings = []
        # uvicorn closes a connection whose app raised: one connection per request.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with UvicornThread(app) as server, httpx.Client(limits=no_reuse, timeout=60) as client:
            for i in range(20):
                path = "/boom" if i % 2 else "/"
                started = time.perf_counter()
                response = client.get(server.url + path)
                timings.append(time.perf_counter() - started)
                if path == "/":
                    assert_hello(response)
                else:
                    assert (response.status_code, response.text) == (500, "Internal Server Error")
    finally:
        sentry_sdk.get_client().close(timeout=0.5)
    assert max(timings) < 2.5  # an envelope takes 5 s at the slow sink
    assert captured == ["payment failed"] * 10  # Sentry captured every error
    if kind == "slow sink":
        assert SlowSink.received >= 1  # the transport did send, and waited on the sink
    samples = scrape(registry)
    assert value(samples, COUNT, http_response_status_code="500") == 10
    assert value(samples, INTERNAL) == 0


# ----------------------------------------------------------------------------- OpenTelemetry


class FailingExporter(SpanExporter):
    """An exporter whose collector is down: ``export`` raises, or returns FAILURE."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.calls += 1
        if self.mode == "raises":
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def traced_app(registry: CollectorRegistry, provider: Any) -> Any:
    """The OpenTelemetry ASGI instrumentation around a guarded app that makes its own span."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    tracer = provider.get_tracer("portal")

    async def charge(request: Request) -> Response:
        with tracer.start_as_current_span("charge") as span:
            span.set_attribute("card", "4242")
        return PlainTextResponse("charged", headers={"X-App": "1"})

    guard = LaunchGuard(registry=registry, environ={}, access_log=False, header_lint=False)
    return OpenTelemetryMiddleware(
        guard.asgi(Starlette(routes=[Route("/charge", charge)])), tracer_provider=provider
    )


@pytest.mark.anyio
class TestOtelExporter:
    @pytest.mark.parametrize("processor", ["simple", "batch"])
    @pytest.mark.parametrize("mode", ["raises", "failure"])
    async def test_failing_exporter(
        self, processor: str, mode: str, registry: CollectorRegistry
    ) -> None:
        """RedactingSpanExporter around an exporter that raises or fails, under both span
        processors: the responses are the app's; the guard counts nothing."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from launchguard.integrations.otel import RedactingSpanExporter

        failing = FailingExporter(mode)
        exporter = RedactingSpanExporter(failing)
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(exporter) if processor == "simple" else BatchSpanProcessor(exporter)
        )
        app = traced_app(registry, provider)
        for _ in range(5):
            messages = await call(app, "/charge")
            assert (status_of(messages), body_of(messages)) == (200, b"charged")
        provider.force_flush()
        provider.shutdown()
        assert failing.calls >= 1  # the spans did reach the failing exporter
        samples = scrape(registry)
        assert value(samples, COUNT) == 5
        assert value(samples, INTERNAL) == 0

    async def test_failing_redaction_fails_closed(self, registry: CollectorRegistry) -> None:
        """A failure inside RedactingSpanExporter's own masking: the OpenTelemetry processor
        logs it, the spans are dropped (never exported unmasked), the responses are the app's.

        The fault is injected (a Redactor subclass that raises): the real one cannot be made
        to fail from outside.
        """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from launchguard.integrations.otel import RedactingSpanExporter
        from launchguard.redact import Redactor

        class BrokenRedactor(Redactor):
            def redact_value(self, obj: object) -> object:
                raise RuntimeError("redactor bug")

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(RedactingSpanExporter(spans, redactor=BrokenRedactor()))
        )
        messages = await call(traced_app(registry, provider), "/charge")
        assert (status_of(messages), body_of(messages)) == (200, b"charged")
        provider.shutdown()
        assert spans.get_finished_spans() == ()


# ----------------------------------------------------------------------------- PostgreSQL


class Ledgers:
    """Every request ledger the middleware closes, from any thread."""

    def __init__(self) -> None:
        self.items: list[QueryLedger] = []

    def __call__(self, ledger: QueryLedger) -> None:
        self.items.append(ledger)

    def by_route(self, route: str) -> list[tuple[int, int]]:
        """(statements, failed statements) of each request on ``route``."""
        return [(x.count, x.errors) for x in self.items if x.route == route]


@pytest.fixture
def ledgers() -> Iterator[Ledgers]:
    seen = Ledgers()
    with listening(seen):
        yield seen


def terminate_backend(pid: int) -> None:
    """Kill the server process of connection ``pid`` from a second (unguarded) connection, and
    wait until it is gone."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backend did not go away"
            time.sleep(0.01)


class Outermost:
    """What reaches the server: the exception object that left the app stack, if any."""

    def __init__(self) -> None:
        self.raised: list[BaseException] = []


@pytest.mark.slow
@pytest.mark.postgres
class TestDatabaseDropsMidRequest:
    def test_psycopg_under_wsgi(
        self, registry: CollectorRegistry, ledgers: Ledgers, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """psycopg (sync) in a WSGI app: the connection is killed between two statements. The
        app's exception reaches the server unchanged (the server answers 500), the failed
        statement is counted, nothing is counted as an internal error, the next request works."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        import psycopg

        from launchguard.integrations.psycopg import instrument_connection

        instrument_connection(psycopg.connect(PG_DSN)).close()  # hooks in before any request
        raised: list[BaseException] = []
        seen = Outermost()

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            with instrument_connection(psycopg.connect(PG_DSN, autocommit=True)) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                if environ["PATH_INFO"] == "/drop":
                    terminate_backend(row[0])
                try:
                    conn.execute("SELECT 1").fetchone()
                except psycopg.OperationalError as exc:
                    raised.append(exc)
                    raise
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        guard = LaunchGuard(
            registry=registry,
            environ={},
            access_log=False,
            header_lint=False,
            route_resolver=lambda environ: environ["PATH_INFO"],
        )
        guarded = guard.wsgi(app)

        def outermost(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            try:
                return guarded(environ, start_response)
            except BaseException as exc:
                seen.raised.append(exc)
                raise

        with wsgi_server(outermost) as url:
            dropped = httpx.get(url + "/drop", timeout=30)
            after = httpx.get(url + "/ok", timeout=30)
        assert dropped.status_code == 500  # wsgiref's answer to the app's exception
        assert (after.status_code, after.text) == (200, "ok")
        (exc,) = raised
        assert isinstance(exc, psycopg.errors.AdminShutdown)
        assert seen.raised == [exc]  # the very object, through the guard
        assert "terminating connection due to administrator command" in capsys.readouterr().err
        assert ledgers.by_route("/drop") == [(2, 1)]
        assert ledgers.by_route("/ok") == [(2, 0)]
        samples = scrape(registry)
        assert (
            value(samples, COUNT, http_route="/drop", error_type="AdminShutdown")
            == value(samples, COUNT, http_route="/drop", http_response_status_code="500")
            == 1
        )
        assert value(samples, INTERNAL) == 0

    def test_sqlalchemy_asyncpg_under_uvicorn(
        self, registry: CollectorRegistry, ledgers: Ledgers
    ) -> None:
        """SQLAlchemy on asyncpg in a Starlette app under uvicorn: the connection is killed
        between two statements. Starlette's own 500 reaches the client, the app's exception
        reaches the server unchanged, the failed statement is counted, nothing is counted as
        an internal error, and the next request on the same engine works."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

        from launchguard.integrations.sqlalchemy import instrument_engine, uninstrument_engine

        state: dict[str, AsyncEngine] = {}
        raised: list[BaseException] = []
        seen = Outermost()

        async def query(request: Request) -> Response:
            async with state["engine"].connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                if request.path_params["how"] == "drop":
                    await asyncio.to_thread(terminate_backend, pid)
                try:
                    await conn.execute(text("SELECT 1"))
                except sa_exc.DBAPIError as exc:
                    raised.append(exc)
                    raise
            return PlainTextResponse("ok")

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            engine = create_async_engine(
                PG_DSN.replace("postgresql://", "postgresql+asyncpg://"), pool_size=1
            )
            instrument_engine(engine)
            state["engine"] = engine
            yield
            uninstrument_engine(engine)
            await engine.dispose()

        guard = LaunchGuard(registry=registry, environ={}, access_log=False, header_lint=False)
        guarded = guard.asgi(Starlette(routes=[Route("/q/{how}", query)], lifespan=lifespan))

        async def outermost(scope: Any, receive: Any, send: Any) -> None:
            try:
                await guarded(scope, receive, send)
            except BaseException as exc:
                seen.raised.append(exc)
                raise

        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with UvicornThread(outermost, lifespan="on") as server:
            with httpx.Client(base_url=server.url, limits=no_reuse, timeout=30) as client:
                dropped = client.get("/q/drop")
                after = client.get("/q/ok")
        assert (dropped.status_code, dropped.text) == (500, "Internal Server Error")
        assert (after.status_code, after.text) == (200, "ok")
        (exc,) = raised  # asyncpg's words vary with timing: "connection is closed", ...
        assert isinstance(exc, sa_exc.DBAPIError)
        assert seen.raised == [exc]
        assert ledgers.by_route("/q/{how}") == [(2, 1), (2, 0)]
        samples = scrape(registry)
        assert value(samples, COUNT, http_route="/q/{how}", http_response_status_code="500") == 1
        assert value(samples, COUNT, error_type=type(exc).__qualname__) == 1
        assert value(samples, INTERNAL) == 0


# ----------------------------------------------------------------------------- 1 GiB bodies

CHUNK = 64 * 1024
CHUNKS = 16 * 1024  # 1 GiB in all
MB = 1024 * 1024


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """Yields a list that receives the peak of traced memory above the start, in bytes."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result: list[int] = []
        yield result
        result.append(tracemalloc.get_traced_memory()[1] - start)
    finally:
        tracemalloc.stop()


@pytest.mark.slow
class TestHugeBodies:
    def test_asgi_1_gib_streamed(
        self, registry: CollectorRegistry, log_buffer: io.StringIO
    ) -> None:
        """1 GiB in 64 KiB chunks (each a fresh object) through the ASGI middleware to a send
        that discards them: memory stays flat, and it takes seconds."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(CHUNKS - 1):
                await send({"type": "http.response.body", "body": bytes(CHUNK), "more_body": True})
            await send({"type": "http.response.body", "body": bytes(CHUNK)})

        guarded = LaunchGuard(registry=registry, environ={}).asgi(app)
        received = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: dict[str, Any]) -> None:
            nonlocal received
            received += len(message.get("body", b""))

        from .asgi_util import http_scope

        started = time.perf_counter()
        with peak_growth() as peak:
            asyncio.run(guarded(http_scope("/download"), receive, discard))
        seconds = time.perf_counter() - started
        assert received == CHUNK * CHUNKS
        assert peak[0] < 20 * MB
        assert seconds < 30
        assert value(scrape(registry), COUNT, http_response_status_code="200") == 1

    def test_wsgi_1_gib_streamed(
        self, registry: CollectorRegistry, log_buffer: io.StringIO
    ) -> None:
        """1 GiB from a generator body through the WSGI middleware, iterated as a server does:
        memory stays flat, and it takes seconds."""

        def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            for _ in range(CHUNKS):
                yield bytes(CHUNK)

        guarded = LaunchGuard(registry=registry, environ={}).wsgi(app)
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/download",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
        }
        received = 0
        started = time.perf_counter()
        with peak_growth() as peak:
            body = guarded(environ, lambda status, headers, exc_info=None: None)
            for chunk in body:
                received += len(chunk)
            body.close()  # type: ignore[attr-defined]
        seconds = time.perf_counter() - started
        assert received == CHUNK * CHUNKS
        assert peak[0] < 20 * MB
        assert seconds < 30
        assert value(scrape(registry), COUNT, http_response_status_code="200") == 1

    def test_sse_time_to_first_event(self, registry: CollectorRegistry) -> None:
        """Server-sent events through a real uvicorn: the first event reaches the client as
        fast as without the guard, before the app produces the next one."""
        release = threading.Event()

        async def events(request: Request) -> Response:
            async def stream() -> AsyncIterator[bytes]:
                yield b"data: first\n\n"
                for _ in range(1000):
                    if release.is_set():
                        break
                    await asyncio.sleep(0.01)
                yield b"data: last\n\n" if release.is_set() else b"data: timed out\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")

        def first_event(app: Any) -> tuple[float, bytes, bytes]:
            release.clear()
            with UvicornThread(app) as server:
                started = time.perf_counter()
                with httpx.stream("GET", server.url + "/events", timeout=30) as response:
                    chunks = response.iter_raw()
                    first = next(chunks)
                    seconds = time.perf_counter() - started
                    release.set()
                    rest = b"".join(chunks)
            return seconds, first, rest

        bare = Starlette(routes=[Route("/events", events)])
        guard = LaunchGuard(registry=registry, environ={}, access_log=False)
        bare_seconds, *bare_body = first_event(bare)
        guarded_seconds, *guarded_body = first_event(guard.asgi(bare))
        assert bare_body == guarded_body == [b"data: first\n\n", b"data: last\n\n"]
        assert guarded_seconds < bare_seconds + 0.5
        assert guarded_seconds < 1.0


# ----------------------------------------------------------------------------- threads


@pytest.mark.anyio
class TestThreads:
    async def test_request_id_and_queries_in_threads(
        self, registry: CollectorRegistry, log_buffer: io.StringIO, ledgers: Ledgers
    ) -> None:
        """asyncio.to_thread and run_in_executor(copy_context().run) carry the request's
        context: their log lines have its request id and their statements count in its
        ledger. A bare loop.run_in_executor starts from an empty context: no request id, and
        the statement is counted nowhere."""
        conn = guarded_sqlite3.connect(":memory:", check_same_thread=False)

        def work(how: str) -> None:
            logging.getLogger("app.worker").warning("worked", extra={"how": how})
            conn.execute("SELECT ?", (how,)).fetchall()

        async def view(request: Request) -> Response:
            how = request.path_params["how"]
            loop = asyncio.get_running_loop()
            if how == "to_thread":
                await asyncio.to_thread(work, how)
            elif how == "run_in_executor":
                await loop.run_in_executor(None, work, how)
            else:
                await loop.run_in_executor(None, contextvars.copy_context().run, work, how)
            return PlainTextResponse("ok")

        guard = LaunchGuard(registry=registry, environ={}, access_log=False, header_lint=False)
        app = guard.asgi(Starlette(routes=[Route("/work/{how}", view)]))
        ways = ["to_thread", "run_in_executor", "copy_context"]
        try:
            for how in ways:
                await call(app, f"/work/{how}", headers=[(b"x-request-id", how.encode())])
        finally:
            conn.close()
        lines = [json.loads(x) for x in log_buffer.getvalue().splitlines()]
        ids = {line["how"]: line.get("request_id") for line in lines if line["event"] == "worked"}
        assert ids == {
            "to_thread": "to_thread",
            "run_in_executor": None,
            "copy_context": "copy_context",
        }
        assert [ledger.count for ledger in ledgers.items] == [1, 0, 1]

    def test_in_flight_gauge_and_counts_exact_across_threads(
        self, registry: CollectorRegistry
    ) -> None:
        """Eight threads start and finish requests at once: while eight are held inside the
        app the in-flight gauge reads exactly 8, and afterwards 0 with every request counted
        (starts are counted without a lock, ends under the histogram's)."""
        guard = LaunchGuard(
            registry=registry, environ={}, access_log=False, header_lint=False, alerts=False
        )
        held = threading.Barrier(9)
        release = threading.Event()

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            if environ["PATH_INFO"] == "/hold":
                held.wait(timeout=10)
                release.wait(timeout=10)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        wsgi = guard.wsgi(app)
        per_thread = 2000

        def client(n: int) -> None:
            def one(path: str) -> None:
                body = wsgi({"REQUEST_METHOD": "GET", "PATH_INFO": path}, lambda *a: None)
                assert list(body) == [b"ok"]

            for _ in range(per_thread // 2):
                one("/fast")
            one("/hold")
            for _ in range(per_thread // 2):
                one("/fast")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        held.wait(timeout=10)
        assert (
            value(scrape(registry), "http_server_active_requests", http_request_method="GET") == 8
        )
        release.set()
        for thread in threads:
            thread.join(timeout=30)
        samples = scrape(registry)
        assert value(samples, "http_server_active_requests", http_request_method="GET") == 0
        total = value(samples, "http_server_request_duration_seconds_count")
        assert total == 8 * (per_thread + 1)
