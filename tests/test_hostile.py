"""Hostile input never breaks the guard: property-based tests for the parsers it owns, and
odd requests through the middleware (invalid UTF-8, 64 KB paths, repeated and huge headers)."""

from __future__ import annotations

import asyncio
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.access import client_ip
from launchguard.context import valid_request_id
from launchguard.routes import django_template, flask_template

from .asgi_util import call, status_of
from .helpers import scrape, series, value

FAST = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


class TestParsers:
    @FAST
    @given(st.text(max_size=300))
    def test_django_template_total(self, route: str) -> None:
        """Any resolver route string becomes a template starting with '/', never raising."""
        assert django_template(route).startswith("/")

    @FAST
    @given(st.text(max_size=300))
    def test_flask_template_total(self, rule: str) -> None:
        """Any rule string converts without raising."""
        assert isinstance(flask_template(rule), str)

    @FAST
    @given(st.one_of(st.none(), st.text(max_size=300)))
    def test_request_id_validation(self, value: str | None) -> None:
        """Only short ids of the safe charset are accepted."""
        accepted = valid_request_id(value)
        if accepted:
            assert value is not None
            assert 1 <= len(value) <= 128
            assert set(value) <= set(string.ascii_letters + string.digits + "._:@-")

    @FAST
    @given(st.one_of(st.none(), st.text(max_size=50)), st.one_of(st.none(), st.text(max_size=500)))
    def test_client_ip_total(self, peer: str | None, forwarded: str | None) -> None:
        """X-Forwarded-For parsing never raises and only returns an address it parsed."""
        import ipaddress

        trusted = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
        found = client_ip(peer, forwarded, trusted)
        if found is not None:
            ipaddress.ip_address(found.split("%", 1)[0])


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def app(registry: CollectorRegistry) -> Any:
    guard = LaunchGuard(registry=registry, environ={})  # access log on: paths get redacted
    return guard.asgi(Starlette(routes=[Route("/hello/{name}", hello)]))


class TestThroughTheMiddleware:
    @settings(max_examples=150, deadline=None, database=None)
    @given(
        path=st.text(max_size=200),
        method=st.text(alphabet=string.ascii_uppercase + "-_", min_size=1, max_size=20),
        headers=st.lists(
            st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=200)), max_size=12
        ),
    )
    def test_random_requests(
        self, path: str, method: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Random paths, methods and header bytes: the app answers, series stay bounded."""
        registry = CollectorRegistry()
        guarded = app(registry)
        lowered = [(name.lower(), value) for name, value in headers]
        messages = asyncio.run(call(guarded, "/" + path, method, headers=lowered))
        assert 100 <= status_of(messages) < 600
        routes = {
            s["http_route"]
            for s in series(scrape(registry), "http_server_request_duration_seconds_count")
        }
        assert routes <= {"/hello/{name}", "__unmatched__"}

    def test_repeated_id_header_last_wins(self) -> None:
        """A repeated X-Request-ID: the last one is kept and echoed."""
        guarded = app(CollectorRegistry())
        headers = [(b"x-request-id", b"first"), (b"accept", b"*/*"), (b"x-request-id", b"last")]
        messages = asyncio.run(call(guarded, "/hello/x", headers=headers))
        start = next(m for m in messages if m["type"] == "http.response.start")
        assert [v for k, v in start["headers"] if k == b"x-request-id"] == [b"last"]

    def test_malformed_header_items(self) -> None:
        """Header items that are not (name, value) pairs reach the app as they are; the guard
        reads no header then and still records the request."""
        seen: list[Any] = []

        async def raw(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["headers"])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        registry = CollectorRegistry()
        guarded = LaunchGuard(registry=registry, environ={}).asgi(raw)
        cases: list[list[Any]] = [
            [(b"host", b"x", b"extra"), (b"cookie",)],
            [(b"x-request-id", "text, not bytes")],
        ]
        for odd in cases:
            messages = asyncio.run(call(guarded, "/", headers=odd))
            assert status_of(messages) == 204
            assert seen[-1] == odd
        count = "http_server_request_duration_seconds_count"
        assert value(scrape(registry), count, http_response_status_code="204") == 2

    def test_invalid_utf8_and_huge_inputs(self) -> None:
        """Invalid UTF-8 raw paths, a 64 KB path, a 1 MB header and repeated ids are handled."""
        registry = CollectorRegistry()
        guarded = app(registry)
        cases = [
            {"raw_path": b"/hello/\xff\xfe"},
            {"path": "/hello/" + "a" * 65536},
            {"headers": [(b"x-request-id", b"x" * 1_000_000)]},
            {"headers": [(b"x-request-id", b"a"), (b"x-request-id", b"b")] * 50},
            {"query_string": b"\xff" * 10_000},
        ]
        for extra in cases:
            path = extra.pop("path", "/hello/x")
            messages = asyncio.run(call(guarded, path, **extra))
            assert status_of(messages) in (200, 404)
