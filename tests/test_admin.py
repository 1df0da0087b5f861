"""The /metrics endpoint: access control, negotiation and path handling, ASGI and WSGI alike."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from launchguard import LaunchGuard
from launchguard.admin import MetricsEndpoint

from .asgi_util import body_of, call, status_of
from .helpers import parse

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-scrape-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def app_404(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def wsgi_404(environ: Any, start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [])
    return [b"app"]


def guard(registry: CollectorRegistry, **options: Any) -> LaunchGuard:
    return LaunchGuard(service="t", registry=registry, environ={}, **options)


def headers_of(messages: list[dict[str, Any]]) -> dict[str, str]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return {k.decode(): v.decode() for k, v in start["headers"]}


class TestToken:
    @pytest.mark.parametrize(
        ("authorization", "status"),
        [
            (None, 401),
            ("Bearer wrong", 401),
            (f"Basic {TOKEN}", 401),
            (f"Bearer {TOKEN}x", 401),
            (f"Bearer {TOKEN}", 200),
            (f"bearer  {TOKEN} ", 200),
        ],
    )
    async def test_asgi(
        self, registry: CollectorRegistry, authorization: str | None, status: int
    ) -> None:
        """Only the right bearer token scrapes; others get 401 with a challenge."""
        headers = [(b"authorization", authorization.encode())] if authorization else []
        app = guard(registry, metrics_token=TOKEN).asgi(app_404)
        messages = await call(app, "/metrics", headers=headers)
        assert status_of(messages) == status
        if status == 401:
            assert headers_of(messages)["www-authenticate"].startswith("Bearer")
            assert b"http_server" not in body_of(messages)

    def test_wsgi(self, registry: CollectorRegistry) -> None:
        """The WSGI adapter applies the same token check."""
        client = Client(guard(registry, metrics_token=TOKEN).wsgi(wsgi_404))
        assert client.get("/metrics").status_code == 401
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert any(name == "launchguard_build_info" for name, _, _ in parse(ok.text))

    def test_token_never_in_output(self, registry: CollectorRegistry) -> None:
        """The token appears in no response, authorised or not."""
        client = Client(guard(registry, metrics_token=TOKEN).wsgi(wsgi_404))
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            response = client.get("/metrics", headers=headers)
            assert TOKEN not in response.text
            assert TOKEN not in str(response.headers)


class TestAllowlist:
    @pytest.mark.parametrize(
        ("client", "status"),
        [("10.1.2.3", 200), ("192.168.0.1", 403), ("::ffff:10.0.0.9", 200), ("nonsense", 403)],
    )
    async def test_client_networks(
        self, registry: CollectorRegistry, client: str, status: int
    ) -> None:
        """Only clients in the allowed networks may scrape."""
        app = guard(registry, metrics_allow=["10.0.0.0/8"]).asgi(app_404)
        assert status_of(await call(app, "/metrics", client=(client, 1))) == status

    async def test_forwarded_header_is_ignored(self, registry: CollectorRegistry) -> None:
        """A forged X-Forwarded-For does not get a client past the allowlist."""
        app = guard(registry, metrics_allow=["10.0.0.0/8"]).asgi(app_404)
        messages = await call(
            app, "/metrics", client=("203.0.113.5", 1), headers=[(b"x-forwarded-for", b"10.0.0.1")]
        )
        assert status_of(messages) == 403


class TestPaths:
    @pytest.mark.parametrize("path", ["/metrics/", "//metrics", "/METRICS", "/metrics%00"])
    async def test_only_exact_path_is_served(self, registry: CollectorRegistry, path: str) -> None:
        """Near misses go to the app, never to an unprotected copy of the endpoint."""
        app = guard(registry, metrics_token=TOKEN).asgi(app_404)
        messages = await call(app, path)
        assert (status_of(messages), body_of(messages)) == (404, b"app")

    async def test_custom_path_and_disabled(self, registry: CollectorRegistry) -> None:
        """The path is configurable, and ``off`` leaves /metrics to the app."""
        custom = guard(registry, metrics_path="/internal/metrics").asgi(app_404)
        assert status_of(await call(custom, "/internal/metrics")) == 200
        off = LaunchGuard(registry=CollectorRegistry(), environ={}, metrics_path="off")
        assert body_of(await call(off.asgi(app_404), "/metrics")) == b"app"

    async def test_post_is_405(self, registry: CollectorRegistry) -> None:
        """Only GET and HEAD scrape."""
        messages = await call(guard(registry).asgi(app_404), "/metrics", "POST")
        assert status_of(messages) == 405
        assert headers_of(messages)["allow"] == "GET, HEAD"


class TestEncoding:
    def test_gzip_and_cache_control(self, registry: CollectorRegistry) -> None:
        """gzip when asked; never cacheable."""
        endpoint = MetricsEndpoint(guard(registry).config, guard(registry).metrics.exposition)
        status, headers, body = endpoint.respond(
            "GET", accept="", accept_encoding="gzip, br", authorization="", client="127.0.0.1"
        )
        found = dict(headers)
        assert status == 200
        assert found["Content-Encoding"] == "gzip"
        assert found["Cache-Control"] == "no-store"
        assert b"launchguard_build_info" in gzip.decompress(body)
