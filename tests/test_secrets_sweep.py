"""Secrets planted in every input channel reach no output: logs, access log, Sentry envelopes
(real sentry-sdk sending to an HTTP sink on 127.0.0.1), exported spans, /metrics, health JSON
and response headers."""

from __future__ import annotations

import gzip
import io
import logging
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.health import custom_check

from .helpers import UvicornThread

pytestmark = pytest.mark.slow

SECRETS = {
    "github": "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa",
    "stripe": "sk_live_" + "51HqLyjWDarjtT1zdp7dcXyZ",
    "aws": "AKIA" + "QWERTYUIOP234567",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz",
    "session": "s3ss10n-" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "password": "Tr0ub4dor&3-horse",
    "slack": "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
}


class Sink(BaseHTTPRequestHandler):
    """Sentry's envelope endpoint, on 127.0.0.1: keeps every body it receives."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":  # pragma: no cover - only if brotli is installed
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        Sink.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_sink() -> Iterator[str]:
    Sink.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public@127.0.0.1:{server.server_port}/1"
    server.shutdown()
    server.server_close()


def test_no_secret_in_any_output(
    sentry_sink: str, log_buffer: io.StringIO, registry: CollectorRegistry
) -> None:
    """Every channel gets secrets; every output is searched for them."""
    import sentry_sdk
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from launchguard.integrations import sentry as lg_sentry
    from launchguard.integrations.otel import RedactingSpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(spans)))
    tracer = provider.get_tracer("portal")

    def user_hook(event: Any, hint: Any) -> Any:
        event.setdefault("extra", {})["added_by_user_hook"] = f"key={SECRETS['stripe']}"
        return event

    sentry_sdk.init(
        dsn=sentry_sink,
        data_collection={},  # collect what the SDK collects by default, frame variables included
        before_send=user_hook,
        default_integrations=False,
    )
    assert lg_sentry.install()

    async def pay(request: Request) -> Response:
        with tracer.start_as_current_span("charge") as span:
            span.set_attribute("http.request.header.authorization", f"Bearer {SECRETS['jwt']}")
            span.set_attribute(
                "db.connection_string", f"postgresql://app:{SECRETS['password']}@db/portal"
            )
            span.add_event("retry", {"api_key": SECRETS["stripe"]})
        structlog.get_logger("payments").info(
            "charging", card_token=SECRETS["session"], note=f"slack {SECRETS['slack']}"
        )
        logging.getLogger("payments").warning(
            "db at postgres://app:%s@db/portal", SECRETS["password"]
        )
        sentry_sdk.set_tag("aws_key", SECRETS["aws"])
        sentry_sdk.set_extra("github", SECRETS["github"])
        sentry_sdk.add_breadcrumb(message=f"called with {SECRETS['github']}")
        try:
            raise RuntimeError(f"card declined: {SECRETS['stripe']} / {SECRETS['aws']}")
        except RuntimeError:
            logging.getLogger("payments").exception("payment failed")
            sentry_sdk.capture_exception()
        sentry_sdk.capture_message(f"login retried, password: {SECRETS['password']}")
        return PlainTextResponse("ok", headers={"X-Trace": "fine"})

    guard = LaunchGuard(
        service="portal",
        registry=registry,
        environ={},
        checks=[custom_check(lambda: False, name="payments", critical=False)],
        health_details="always",
    )
    app = guard.asgi(Starlette(routes=[Route("/pay", pay)]))
    headers = {
        "Authorization": f"Bearer {SECRETS['jwt']}",
        "X-Api-Key": SECRETS["stripe"],
        "Cookie": f"sessionid={SECRETS['session']}; theme=dark",
        "X-Request-ID": SECRETS["github"],  # valid charset: must not be echoed as a secret
    }
    with UvicornThread(app) as server:
        response = httpx.get(
            f"{server.url}/pay",
            params={"token": SECRETS["github"], "password": SECRETS["password"], "q": "ok"},
            headers=headers,
        )
        metrics = httpx.get(server.url + "/metrics").text
        health = httpx.get(server.url + "/readyz").text
    sentry_sdk.flush(timeout=5)
    sentry_sdk.get_client().close()

    assert response.status_code == 200
    envelopes = b"\n".join(Sink.received).decode("utf-8", "replace")
    assert "card declined" in envelopes  # the event did reach the sink
    assert "payment failed" in log_buffer.getvalue()
    exported = "\n".join(
        f"{span.name} {dict(span.attributes or {})} "
        f"{[dict(event.attributes or {}) for event in span.events]}"
        for span in spans.get_finished_spans()
    )
    assert "charge" in exported
    outputs = {
        "logs": log_buffer.getvalue(),
        "sentry envelopes": envelopes,
        "spans": exported,
        "metrics": metrics,
        "health": health,
        "response headers": str(response.headers),
        "response body": response.text,
    }
    leaks = [
        f"{kind} in {where}"
        for where, text in outputs.items()
        for kind, secret in SECRETS.items()
        if secret in text
    ]
    assert leaks == []
