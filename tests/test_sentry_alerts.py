"""Alerts reach a real sentry-sdk client that sends to an HTTP envelope sink on 127.0.0.1:
one slow-endpoint event per route per cooldown, N+1 events, request tags, and no secret in
any envelope."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard, context
from launchguard.integrations import sqlite3 as guarded_sqlite3

from .asgi_util import call
from .helpers import scrape, value

sentry_sdk = pytest.importorskip("sentry_sdk")

pytestmark = pytest.mark.anyio

SECRETS = {
    "github": "ghp_" + "Qw9Er8Ty7Ui6Op5As4Df3Gh2Jk1Lz0XcVbNm",
    "stripe": "sk_live_" + "51JrMzkXEbsuUv2ceq8eaYwQ",
    "password": "c0rrect-h0rse-B4ttery!",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Sink(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint: keeps every body it receives."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":  # sentry-sdk's choice when brotli is installed
            import brotli

            body = brotli.decompress(body)
        Sink.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def events(bodies: list[bytes]) -> list[dict[str, Any]]:
    """The event items of every envelope received."""
    found = []
    for body in bodies:
        lines = body.split(b"\n")
        i = 1  # line 0: the envelope header
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            header = json.loads(lines[i])
            payload = lines[i + 1]
            if header.get("type") == "event":
                found.append(json.loads(payload))
            i += 2
    return found


@pytest.fixture
def sentry() -> Iterator[Any]:
    """A real Sentry client sending to the sink; the global client is reset afterwards."""
    Sink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sentry_sdk.init(
        dsn=f"http://public@127.0.0.1:{server.server_port}/1",
        default_integrations=False,
        data_collection={},
    )

    def flushed() -> list[dict[str, Any]]:
        sentry_sdk.flush(timeout=5)
        return events(Sink.received)

    yield flushed
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().clear()
    server.shutdown()
    server.server_close()


def slow_view(request: Request) -> Response:
    # A tag with a secret on the isolation scope: the alerts sent in it are masked.
    sentry_sdk.set_tag("api_key", SECRETS["stripe"])
    time.sleep(0.012)
    return JSONResponse({"ok": True})


async def invoices(request: Request) -> Response:
    conn = guarded_sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE invoice (id INTEGER, customer TEXT, token TEXT)")
        for i in range(6):
            conn.execute(
                "SELECT id FROM invoice WHERE customer = ? AND token = ?",
                (f"c{i}", SECRETS["github"]),
            )
    finally:
        conn.close()
    return JSONResponse({"ok": True})


def boom(request: Request) -> Response:
    try:
        raise RuntimeError(f"card declined for password={SECRETS['password']}")
    except RuntimeError:
        sentry_sdk.capture_exception()
    return JSONResponse({"ok": False})


def app(registry: CollectorRegistry, **options: Any) -> Any:
    guard = LaunchGuard(
        service="portal",
        registry=registry,
        environ={},
        access_log=False,
        budget_min_samples=5,
        **options,
    )
    assert guard.budgets is not None
    guard.budgets.judge_interval = 0.0  # judge on every request: the test need not wait
    return guard.asgi(
        Starlette(
            routes=[
                Route("/reports/{report_id}", slow_view),
                Route("/exports", slow_view),
                Route("/invoices", invoices),
                Route("/boom", boom),
            ]
        )
    )


HEADERS = [
    (b"authorization", f"Bearer {SECRETS['github']}".encode()),
    (b"x-request-id", SECRETS["stripe"].encode()),  # secret-shaped: replaced, never echoed
    (b"cookie", f"session={SECRETS['password']}".encode()),
]


class TestSentryAlerts:
    async def test_slow_endpoint_once_per_route_per_cooldown(
        self, sentry: Any, registry: CollectorRegistry
    ) -> None:
        """20 slow requests on each of two routes: one event each, stable fingerprint, tags."""
        guarded = app(registry, route_budgets={"/reports/*": 0.005, "/exports": 0.005})
        with sentry_sdk.isolation_scope():  # what the app tags stays in this test
            for i in range(20):
                query = f"token={SECRETS['github']}&page={i}".encode()
                await call(guarded, f"/reports/{i}", query_string=query, headers=HEADERS)
                await call(guarded, "/exports", query_string=query, headers=HEADERS)
        sent = sentry()
        slow = [e for e in sent if e.get("tags", {}).get("launchguard.alert") == "slow-endpoint"]
        assert sorted(e["fingerprint"][3] for e in slow) == ["/exports", "/reports/{report_id}"]
        for event in slow:
            route = event["fingerprint"][3]
            assert event["fingerprint"] == ["launchguard", "slow-endpoint", "GET", route]
            assert event["level"] == "warning"
            assert event["tags"]["route"] == route
            assert len(event["tags"]["request_id"]) == 32  # ours, not the secret sent
            assert event["contexts"]["launchguard"]["budget_ms"] == 5.0
            assert event["contexts"]["launchguard"]["samples"] >= 5
            assert "slow endpoint GET" in event["message"]
            assert event["tags"]["api_key"] == "[REDACTED:stripe_secret_key]"  # alerts masked
        assert_no_secrets(Sink.received)

    async def test_n_plus_one_event(self, sentry: Any, registry: CollectorRegistry) -> None:
        """An N+1 reaches Sentry once per route and fingerprint, with its SQL shape only."""
        guarded = app(registry)
        guarded_sqlite3.connect(":memory:").close()  # the hook is announced on first connect
        for _ in range(3):
            await call(guarded, "/invoices", headers=HEADERS)
        sent = sentry()
        found = [e for e in sent if e.get("tags", {}).get("launchguard.alert") == "n-plus-one"]
        assert len(found) == 1
        (event,) = found
        fingerprint = event["contexts"]["launchguard"]["fingerprint"]
        assert event["fingerprint"] == ["launchguard", "n-plus-one", "/invoices", fingerprint]
        assert event["tags"]["route"] == "/invoices"
        assert event["tags"]["db_queries"] == "7"
        assert event["contexts"]["launchguard"]["sql"] == (
            "SELECT id FROM invoice WHERE customer = ? AND token = ?"
        )
        assert event["contexts"]["launchguard"]["call_site"].startswith("tests/")
        assert_no_secrets(Sink.received)

    async def test_events_raised_in_a_request_are_tagged(
        self, sentry: Any, registry: CollectorRegistry
    ) -> None:
        """An exception the app captures carries the request id and query count (Flask and
        Django know the route by then; an ASGI app's comes from Sentry's transaction)."""
        from launchguard.integrations import sentry as lg_sentry

        guarded = app(registry)
        guarded_sqlite3.connect(":memory:").close()
        assert context.track_exchange  # sentry_sdk was imported before the guard
        assert lg_sentry.install()  # masks the app's own events too
        await call(guarded, "/boom", headers=HEADERS)
        (event,) = [e for e in sentry() if e.get("exception")]
        assert len(event["tags"]["request_id"]) == 32
        assert event["tags"]["db_queries"] == "0"
        assert "card declined" in json.dumps(event)
        assert_no_secrets(Sink.received)

    def test_route_from_sentry_transaction(self) -> None:
        """Mid-request under ASGI the route comes from a route-style transaction name."""
        from launchguard.integrations.sentry import enrich_event
        from launchguard.timing import Exchange

        exchange = Exchange("GET", 0.0)
        exchange.request_id = "abc"
        token = context.exchange_var.set(exchange)
        try:
            event = enrich_event(
                {"transaction": "/items/{id}", "transaction_info": {"source": "route"}}, {}
            )
            raw = enrich_event(
                {"transaction": "/items/7", "transaction_info": {"source": "url"}}, {}
            )
        finally:
            context.exchange_var.reset(token)
        assert event["tags"] == {"route": "/items/{id}", "request_id": "abc"}
        assert raw["tags"] == {"request_id": "abc"}

    async def test_alerts_sent_when_init_comes_after_the_guard(
        self, registry: CollectorRegistry
    ) -> None:
        """The client is looked up at alert time: init after creating the guard works."""
        guarded = app(registry, route_budgets={"/exports": 0.005})
        Sink.received = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            sentry_sdk.get_global_scope().set_client(None)
            await call(guarded, "/exports")  # no client yet: nothing sent, nothing raised
            sentry_sdk.init(
                dsn=f"http://public@127.0.0.1:{server.server_port}/1", default_integrations=False
            )
            for _ in range(10):
                await call(guarded, "/exports")
            sentry_sdk.flush(timeout=5)
            sent = events(Sink.received)
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)
            server.shutdown()
            server.server_close()
        assert [e["fingerprint"] for e in sent] == [
            ["launchguard", "slow-endpoint", "GET", "/exports"]
        ]

    async def test_sentry_failure_counted_not_raised(
        self, sentry: Any, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failing SDK call is an internal error of component sentry."""
        from launchguard import _internal
        from launchguard.integrations import sentry as lg_sentry

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("transport exploded")

        monkeypatch.setattr(lg_sentry, "capture_alert", broken)
        monkeypatch.setattr(_internal, "RERAISE", False)
        guarded = app(registry, route_budgets={"/exports": 0.005})
        for _ in range(10):
            messages = await call(guarded, "/exports")
            assert messages[0]["status"] == 200
        assert value(scrape(registry), "launchguard_internal_errors_total", component="sentry") == 1


def assert_no_secrets(bodies: list[bytes]) -> None:
    assert_no_secrets_but(bodies, allowed=set())


def assert_no_secrets_but(bodies: list[bytes], allowed: set[str]) -> None:
    text = b"\n".join(bodies).decode("utf-8", "replace")
    assert text, "nothing reached the sink"
    leaks = [kind for kind, secret in SECRETS.items() if secret in text and kind not in allowed]
    assert leaks == []
