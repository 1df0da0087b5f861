"""Request ids, the access log and ``launchguard.logging.configure()``, read back as JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import launchguard.logging as lg_logging
from launchguard import LaunchGuard
from launchguard.context import current_request_id

from .asgi_util import call

pytestmark = pytest.mark.anyio

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def logs(log_buffer: io.StringIO) -> io.StringIO:
    """The JSON log output of the test (see conftest's ``log_buffer``)."""
    return log_buffer


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def access(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(buffer) if line.get("logger") == "launchguard.access"]


async def endpoint(request: Request) -> Response:
    structlog.get_logger("app").info("in view", card=request.query_params.get("card", ""))
    logging.getLogger("app.std").warning("stdlib in view")
    return PlainTextResponse(current_request_id() or "")


def sync_endpoint(request: Request) -> Response:
    logging.getLogger("app.std").warning("sync view in a worker thread")
    return PlainTextResponse(current_request_id() or "")


def app(registry: CollectorRegistry, **options: Any) -> Any:
    guard = LaunchGuard(service="portal", release="r42", registry=registry, environ={}, **options)
    routes = [Route("/items/{item_id}", endpoint), Route("/sync", sync_endpoint)]
    return guard.asgi(Starlette(routes=routes))


def response_header(messages: list[dict[str, Any]], name: bytes) -> str | None:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return next((v.decode() for k, v in start["headers"] if k == name), None)


class TestRequestId:
    async def test_incoming_id_kept_and_echoed(self, registry: CollectorRegistry) -> None:
        """A well-formed incoming X-Request-ID is used, echoed and visible to the app."""
        messages = await call(app(registry), "/items/1", headers=[(b"x-request-id", b"abc-123")])
        assert response_header(messages, b"x-request-id") == "abc-123"
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        assert body == b"abc-123"

    @pytest.mark.parametrize("name", [b"x-request-id", b"X-Request-ID", b"X-REQUEST-ID"])
    async def test_app_own_id_header_wins(self, registry: CollectorRegistry, name: bytes) -> None:
        """An app that sets the id header itself (in any case) keeps it, and gets no second one;
        other headers are not mistaken for it."""

        async def own(scope: Any, receive: Any, send: Any) -> None:
            headers = [(b"x-request-idx", b"no"), (name, b"app-1"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        guarded = LaunchGuard(registry=registry, environ={}).asgi(own)
        messages = await call(guarded, "/")
        start = next(m for m in messages if m["type"] == "http.response.start")
        ids = [v for k, v in start["headers"] if k.lower() == b"x-request-id"]
        assert ids == [b"app-1"]

    async def test_id_header_added_after_lookalikes(self, registry: CollectorRegistry) -> None:
        """Headers that only look like the id header (longer, shorter) do not stop ours."""

        async def lookalikes(scope: Any, receive: Any, send: Any) -> None:
            headers = [(b"x-request-idx", b"no"), (b"x-request-i", b"no")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        guarded = LaunchGuard(registry=registry, environ={}).asgi(lookalikes)
        echoed = response_header(await call(guarded, "/"), b"x-request-id")
        assert echoed is not None
        assert len(echoed) == 32

    @pytest.mark.parametrize(
        "bad", [b"", b"x" * 129, b"evil\xff", b"a b", b"<script>", GITHUB.encode()]
    )
    async def test_bad_incoming_id_replaced(self, registry: CollectorRegistry, bad: bytes) -> None:
        """An invalid incoming id is replaced by a fresh one."""
        messages = await call(app(registry), "/items/1", headers=[(b"x-request-id", bad)])
        echoed = response_header(messages, b"x-request-id")
        assert echoed is not None
        assert len(echoed) == 32
        assert echoed != bad.decode("latin-1")

    async def test_ids_bound_in_every_log_line(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """structlog and stdlib lines, async and threadpool views, carry the request id."""
        guarded = app(registry)
        ids = []
        for path in ("/items/1", "/sync"):
            messages = await call(guarded, path)
            ids.append(response_header(messages, b"x-request-id"))
        written = [line for line in lines(logs) if line["logger"] != "launchguard.access"]
        by_event = {line["event"]: line.get("request_id") for line in written}
        assert by_event["in view"] == ids[0]
        assert by_event["stdlib in view"] == ids[0]
        assert by_event["sync view in a worker thread"] == ids[1]
        assert current_request_id() is None  # reset after the request

    async def test_concurrent_requests_keep_their_ids(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """500 interleaved requests: each log line carries its own request's id."""

        async def slow(request: Request) -> Response:
            rid = request.headers["x-request-id"]
            for _ in range(3):
                await asyncio.sleep(0)
                assert current_request_id() == rid
            structlog.get_logger("app").info("done", expected=rid)
            return PlainTextResponse(rid)

        guard = LaunchGuard(registry=registry, environ={}, access_log=False)
        guarded = guard.asgi(Starlette(routes=[Route("/", slow)]))
        await asyncio.gather(
            *(
                call(guarded, "/", headers=[(b"x-request-id", f"req-{i}".encode())])
                for i in range(500)
            )
        )
        done = [line for line in lines(logs) if line["event"] == "done"]
        assert len(done) == 500
        assert all(line["request_id"] == line["expected"] for line in done)


class TestNewRequestId:
    def test_unique_hex_across_threads_and_batches(self) -> None:
        """Ids come from batched urandom reads: 32 hex characters, never handed out twice,
        whichever thread asks and across many refills."""
        import threading

        from launchguard.context import new_request_id

        seen: list[list[str]] = [[] for _ in range(8)]

        def take(bucket: list[str]) -> None:
            for _ in range(3000):
                bucket.append(new_request_id())

        threads = [threading.Thread(target=take, args=(bucket,)) for bucket in seen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [rid for bucket in seen for rid in bucket]
        assert len(set(ids)) == len(ids) == 24_000
        assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in ids)

    def test_a_forked_child_does_not_reuse_the_parents_ids(self) -> None:
        """A gunicorn worker forked from a parent holding unused ids makes its own (forked
        from a fresh interpreter: forking this threaded test process is unsafe)."""
        import subprocess
        import sys

        script = """
import os
from launchguard.context import new_request_id

new_request_id()  # the parent now holds a batch of unused ids
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    os.write(write, ",".join(new_request_id() for _ in range(5)).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    child = pipe.read().split(",")
os.waitpid(pid, 0)
parent = [new_request_id() for _ in range(5)]
assert len(child) == 5, child
assert not set(child) & set(parent), (child, parent)
print("ok")
"""
        run = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "ok"


class TestAccessLog:
    async def test_fields(self, registry: CollectorRegistry, logs: io.StringIO) -> None:
        """One JSON line per request with route, redacted path, status, timing and ids."""
        messages = await call(
            app(registry), "/items/7", query_string=f"token={GITHUB}&page=2".encode()
        )
        (line,) = access(logs)
        assert line["event"] == "request"
        assert line["level"] == "info"
        assert line["method"] == "GET"
        assert line["route"] == "/items/{item_id}"
        assert line["status"] == 200
        assert line["release"] == "r42"
        assert line["request_id"] == response_header(messages, b"x-request-id")
        assert line["duration_ms"] > 0
        assert line["path"].startswith("/items/7?token=[REDACTED")
        assert "page=2" in line["path"]
        assert GITHUB not in logs.getvalue()
        assert "client_ip" not in line
        assert "timestamp" in line

    async def test_client_ip_only_through_trusted_proxy(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """client_ip comes from X-Forwarded-For only when the peer is a trusted proxy."""
        guarded = app(registry, trusted_proxies=["10.0.0.0/8"])
        forwarded = [(b"x-forwarded-for", b"198.51.100.7, 10.0.0.2")]
        await call(guarded, "/items/1", client=("10.0.0.1", 1), headers=forwarded)
        await call(guarded, "/items/1", client=("203.0.113.9", 1), headers=forwarded)
        trusted, untrusted = access(logs)
        assert trusted["client_ip"] == "198.51.100.7"
        assert "client_ip" not in untrusted

    async def test_sampling_keeps_errors(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """With sampling at 0 fast successes are dropped, errors still logged."""

        async def boom(request: Request) -> Response:
            raise RuntimeError(f"payment failed for {STRIPE}")

        guard = LaunchGuard(registry=registry, environ={}, access_log_sample=0.0)
        guarded = guard.asgi(Starlette(routes=[Route("/ok", endpoint), Route("/boom", boom)]))
        await call(guarded, "/ok")
        with pytest.raises(RuntimeError):
            await call(guarded, "/boom")
        (line,) = access(logs)
        assert (line["route"], line["status"], line["level"]) == ("/boom", 500, "error")
        assert line["error_type"] == "RuntimeError"

    async def test_off(self, registry: CollectorRegistry, logs: io.StringIO) -> None:
        """access_log=False writes nothing."""
        await call(app(registry, access_log=False), "/items/1")
        assert access(logs) == []


class TestConfigure:
    def test_stdlib_and_structlog_masked(self, logs: io.StringIO) -> None:
        """Messages, args, extras, key names and tracebacks are masked in both worlds."""
        structlog.get_logger("app").info("charge", api_key=STRIPE, db_password="hunter2!")
        logging.getLogger("app").warning("url %s", "postgres://admin:s3cretpw@db/app")
        try:
            raise ValueError(f"token {GITHUB}")
        except ValueError:
            logging.getLogger("app").exception("failed")
        output = logs.getvalue()
        for secret in (STRIPE, "hunter2!", "s3cretpw", GITHUB):
            assert secret not in output
        assert "[REDACTED:" in output
        assert len(lines(logs)) == 3

    def test_redaction_must_come_last(self) -> None:
        """A processor after the redactor (other than the renderer) is refused."""
        redact = lg_logging.RedactingProcessor()
        render = structlog.processors.JSONRenderer()
        lg_logging.check_processors([redact, render])
        with pytest.raises(ValueError, match="after RedactingProcessor"):
            lg_logging.check_processors([redact, structlog.processors.add_log_level, render])
        with pytest.raises(ValueError, match="no RedactingProcessor"):
            lg_logging.check_processors([render])


class TestThreads:
    async def test_what_threads_see(self, registry: CollectorRegistry) -> None:
        """to_thread and copy_context().run keep the request id; bare run_in_executor does not."""
        import contextvars

        seen: dict[str, str | None] = {}

        async def view(request: Request) -> Response:
            loop = asyncio.get_running_loop()
            seen["to_thread"] = await asyncio.to_thread(current_request_id)
            seen["run_in_executor"] = await loop.run_in_executor(None, current_request_id)
            context = contextvars.copy_context()
            seen["copy_context"] = await loop.run_in_executor(None, context.run, current_request_id)
            return PlainTextResponse("ok")

        guard = LaunchGuard(registry=registry, environ={}, access_log=False)
        guarded = guard.asgi(Starlette(routes=[Route("/", view)]))
        await call(guarded, "/", headers=[(b"x-request-id", b"rid-1")])
        assert seen == {"to_thread": "rid-1", "run_in_executor": None, "copy_context": "rid-1"}


class TestThreadedWsgi:
    def test_each_thread_logs_its_own_request_id(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """Under a threaded WSGI server, concurrent requests log their own request ids."""
        import threading
        import time as _time
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        import httpx

        def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            _time.sleep(0.01)  # overlap the requests
            logging.getLogger("app.wsgi").warning(
                "handling", extra={"expected": environ["HTTP_X_REQUEST_ID"]}
            )
            start_response("200 OK", [])
            return [b"ok"]

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        guard = LaunchGuard(registry=registry, environ={}, access_log=False)
        server = make_server("127.0.0.1", 0, guard.wsgi(wsgi_app), Server, Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/"

        def client(i: int) -> None:
            httpx.get(url, headers={"X-Request-ID": f"wsgi-{i}"})

        try:
            threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.shutdown()
            server.server_close()
        handled = [line for line in lines(logs) if line["event"] == "handling"]
        assert len(handled) == 40
        assert all(line["request_id"] == line["expected"] for line in handled)


class TestTraceIds:
    async def test_access_log_and_lines_carry_trace_ids(
        self, registry: CollectorRegistry, logs: io.StringIO
    ) -> None:
        """With an OpenTelemetry span active, log lines and the access line carry its ids."""
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("GET /items") as span:
            await call(app(registry), "/items/3")
            trace_id = format(span.get_span_context().trace_id, "032x")
            span_id = format(span.get_span_context().span_id, "016x")
        (line,) = access(logs)
        in_view = next(x for x in lines(logs) if x["event"] == "in view")
        assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
        assert in_view["trace_id"] == trace_id
