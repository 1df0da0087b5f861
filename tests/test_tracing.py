"""OpenTelemetry linkage, with the SDK's in-memory exporter: span attributes, the trace id in the
access log, and the trace id as an exemplar in the OpenMetrics scrape - with and without the
opentelemetry-instrumentation-asgi / -wsgi middlewares."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.integrations import sqlite3 as guarded_sqlite3

from .asgi_util import body_of, call
from .helpers import parse

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

pytestmark = pytest.mark.anyio

TOKEN = "ghp_" + "Mn8Bv7Cx6Zl5Kj4Hg3Fd2Sa1Qw0ErTyUiOpAs"
DURATION = "http_server_request_duration_seconds"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def item(request: Request) -> Response:
    conn = guarded_sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE line (id INTEGER, item INTEGER)")
        for i in range(6):
            conn.execute("SELECT id FROM line WHERE item = ?", (i,))
    finally:
        conn.close()
    return JSONResponse({"id": request.path_params["item_id"]})


def guarded_app(registry: CollectorRegistry, **options: Any) -> Any:
    guarded_sqlite3.connect(":memory:").close()  # the hook is announced on first connect
    guard = LaunchGuard(service="portal", registry=registry, environ={}, **options)
    return guard.asgi(Starlette(routes=[Route("/items/{item_id}", item)]))


def exemplars(openmetrics_text: str) -> list[tuple[dict[str, str], dict[str, str], float]]:
    """(series labels, exemplar labels, exemplar value) of every duration bucket with one."""
    return [
        (dict(s.labels), dict(s.exemplar.labels), s.exemplar.value)
        for family in text_string_to_metric_families(openmetrics_text)
        for s in family.samples
        if s.name == DURATION + "_bucket" and s.exemplar is not None
    ]


def server_span(exporter: InMemorySpanExporter, prefix: str = "GET") -> ReadableSpan:
    (span,) = [
        s for s in exporter.get_finished_spans() if s.parent is None and s.name.startswith(prefix)
    ]
    return span


def access_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [
        line
        for line in (json.loads(x) for x in buffer.getvalue().splitlines() if x.strip())
        if line.get("logger") == "launchguard.access"
    ]


async def scrape_openmetrics(app: Any) -> str:
    messages = await call(
        app, "/metrics", headers=[(b"accept", b"application/openmetrics-text; version=1.0.0")]
    )
    return body_of(messages).decode()


class TestWithTheAsgiInstrumentation:
    async def test_span_attributes_log_and_exemplar(
        self,
        spans: tuple[TracerProvider, InMemorySpanExporter],
        registry: CollectorRegistry,
        log_buffer: io.StringIO,
    ) -> None:
        """OpenTelemetryMiddleware outside the guard: route, query facts, trace id everywhere."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        provider, exporter = spans
        app = OpenTelemetryMiddleware(
            guarded_app(registry), tracer_provider=provider, exclude_spans=["receive", "send"]
        )
        await call(app, "/items/3", query_string=f"token={TOKEN}".encode())
        span = server_span(exporter)
        attributes = dict(span.attributes or {})
        assert attributes["http.route"] == "/items/{item_id}"
        assert span.name == "GET /items/{item_id}"  # was "GET /items/3"
        assert attributes["launchguard.db.queries"] == 7
        assert attributes["launchguard.db.time_ms"] >= 0
        (finding,) = attributes["launchguard.db.findings"]
        assert finding == "n_plus_one: 6 x SELECT id FROM line WHERE item = ?"
        trace_id = format(span.context.trace_id, "032x")
        (line,) = access_lines(log_buffer)
        assert (line["trace_id"], line["span_id"]) == (
            trace_id,
            format(span.context.span_id, "016x"),
        )
        text = await scrape_openmetrics(app)
        assert text.endswith("# EOF\n")
        ((series, labels, seconds),) = exemplars(text)
        assert series["http_route"] == "/items/{item_id}"
        assert labels == {"trace_id": trace_id, "span_id": format(span.context.span_id, "016x")}
        assert float(series["le"]) >= seconds
        assert TOKEN not in text

    async def test_route_set_by_the_app_is_kept(
        self, spans: tuple[TracerProvider, InMemorySpanExporter], registry: CollectorRegistry
    ) -> None:
        """An http.route already on the span is not overwritten."""
        from opentelemetry import trace
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        def named(request: Request) -> Response:
            trace.get_current_span().set_attribute("http.route", "/custom")
            return JSONResponse({})

        provider, exporter = spans
        guard = LaunchGuard(service="portal", registry=registry, environ={}, access_log=False)
        app = OpenTelemetryMiddleware(
            guard.asgi(Starlette(routes=[Route("/named/{x}", named)])), tracer_provider=provider
        )
        await call(app, "/named/1")
        assert dict(server_span(exporter).attributes or {})["http.route"] == "/custom"

    async def test_unsampled_trace_no_attributes_no_exemplar(
        self, registry: CollectorRegistry
    ) -> None:
        """A trace the sampler dropped gets neither attributes nor an exemplar."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=ALWAYS_OFF)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        app = OpenTelemetryMiddleware(
            guarded_app(registry, access_log=False), tracer_provider=provider
        )
        await call(app, "/items/3")
        assert exporter.get_finished_spans() == ()
        assert exemplars(await scrape_openmetrics(app)) == []


class TestWithoutInstrumentation:
    async def test_span_opened_around_the_guard(
        self,
        spans: tuple[TracerProvider, InMemorySpanExporter],
        registry: CollectorRegistry,
        log_buffer: io.StringIO,
    ) -> None:
        """No instrumentation package: a span the app's own outer middleware opened works."""
        provider, exporter = spans
        tracer = provider.get_tracer("portal")
        inner = guarded_app(registry)

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] == "/metrics":
                await inner(scope, receive, send)
                return
            with tracer.start_as_current_span("GET"):
                await inner(scope, receive, send)

        await call(traced, "/items/5")
        span = server_span(exporter)
        assert span.name == "GET /items/{item_id}"
        assert dict(span.attributes or {})["launchguard.db.queries"] == 7
        trace_id = format(span.context.trace_id, "032x")
        assert access_lines(log_buffer)[0]["trace_id"] == trace_id
        ((_, labels, _),) = exemplars(await scrape_openmetrics(traced))
        assert labels["trace_id"] == trace_id

    async def test_no_span_no_exemplar_and_text_format_parses(
        self, registry: CollectorRegistry
    ) -> None:
        """Without a span nothing is attached; the Prometheus text scrape never has exemplars."""
        app = guarded_app(registry, access_log=False)
        await call(app, "/items/1")
        assert exemplars(await scrape_openmetrics(app)) == []
        text = body_of(await call(app, "/metrics")).decode()
        assert parse(text)  # prometheus-client's text parser accepts it


class TestWsgi:
    def test_streamed_body_under_the_wsgi_instrumentation(
        self,
        spans: tuple[TracerProvider, InMemorySpanExporter],
        registry: CollectorRegistry,
        log_buffer: io.StringIO,
    ) -> None:
        """The span is taken at the start, so a body finished at close() still reaches it:
        its attributes, the exemplar and the access-log line."""
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        provider, exporter = spans

        def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/html")])
            yield b"<p>"
            yield b"hi</p>"

        guard = LaunchGuard(
            service="portal",
            registry=registry,
            environ={},
            route_resolver=lambda environ: "/pages/{slug}",
        )
        app = OpenTelemetryMiddleware(guard.wsgi(wsgi_app), tracer_provider=provider)
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/pages/about",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
        }
        body = app(environ, lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b"<p>hi</p>"
        body.close()  # type: ignore[attr-defined]
        span = server_span(exporter)
        assert dict(span.attributes or {})["http.route"] == "/pages/{slug}"
        assert span.name == "GET /pages/{slug}"
        ((series, labels, _),) = exemplars(openmetrics_latest(registry).decode())
        assert series["http_route"] == "/pages/{slug}"
        assert labels["trace_id"] == format(span.context.trace_id, "032x")
        (line,) = access_lines(log_buffer)
        assert (line["trace_id"], line["span_id"]) == (
            format(span.context.trace_id, "032x"),
            format(span.context.span_id, "016x"),
        )


class TestCurrentSpan:
    """``tracing.current_span`` reads OpenTelemetry's ContextVar directly for the common "no
    span" answer; it must agree with the public API in every case."""

    @staticmethod
    def cases() -> Iterator[tuple[str, Any]]:
        from opentelemetry import trace

        from launchguard import tracing

        provider = TracerProvider()
        unsampled = TracerProvider(sampler=ALWAYS_OFF)
        yield "no span", tracing.current_span()
        with provider.get_tracer("t").start_as_current_span("s") as span:
            assert span.get_span_context().is_valid
            yield "sampled", (tracing.current_span(), span)
        with unsampled.get_tracer("t").start_as_current_span("s") as span:
            yield "unsampled", (tracing.current_span(), span)
        with trace.use_span(trace.INVALID_SPAN):
            yield "invalid", tracing.current_span()
        yield "after", tracing.current_span()

    def check(self) -> None:
        seen = dict(self.cases())
        assert seen["no span"] is None
        assert seen["sampled"][0] is seen["sampled"][1]
        # An unsampled span still has a valid context (its trace id goes in the log line).
        assert seen["unsampled"][0] is seen["unsampled"][1]
        assert seen["invalid"] is None
        assert seen["after"] is None

    def test_direct_context_agrees_with_the_api(self) -> None:
        from launchguard import tracing

        self.check()
        assert tracing._direct_context, "the fast path was not taken"

    def test_without_the_internals_the_public_call_is_used(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Stands in for an OpenTelemetry whose runtime context is not the ContextVar one (a
        monkeypatch: this process cannot load another runtime context after import)."""
        from opentelemetry import context as otel_context

        from launchguard import tracing

        class OtherRuntime:
            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                if name == "_current_context":
                    raise AttributeError(name)
                return getattr(self._inner, name)

        monkeypatch.setattr(
            otel_context, "_RUNTIME_CONTEXT", OtherRuntime(otel_context._RUNTIME_CONTEXT)
        )
        monkeypatch.setattr(tracing, "_direct_context", None)
        self.check()
        assert tracing._direct_context == ()
