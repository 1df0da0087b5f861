"""The Django integration, on the example portal, under a real WSGI server and real uvicorn."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from prometheus_client import CollectorRegistry

from launchguard.metrics import DURATION

from .helpers import UvicornThread, parse, scrape, value, wait_for

COUNT = DURATION + "_count"
SUM = DURATION + "_sum"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The example Django portal, migrated and seeded into a fresh SQLite file."""
    db = tmp_path_factory.mktemp("django") / "portal.sqlite3"
    os.environ["PORTAL_DB"] = str(db)
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_portal.portal.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


@pytest.fixture
def guarded_settings(portal: None, registry: CollectorRegistry) -> Iterator[CollectorRegistry]:
    """A guard of its own for the test: ``LAUNCHGUARD`` with a fresh registry."""
    from django.test import override_settings

    with override_settings(LAUNCHGUARD={"service": "portal-django", "registry": registry}):
        yield registry


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _drive(url: str) -> dict[str, int]:
    statuses = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in (
            "/api/customers/3",
            "/api/customers/4",
            "/billing/1",
            "/archive/2024/",
            "/api/v2/articles/launch",
            "/nope",
            "/dashboard/",  # no such route: CommonMiddleware's APPEND_SLASH finds nothing
            "/boom",
        ):
            statuses[path] = client.get(path).status_code
        streamed = client.get("/stream")
        statuses["/stream"] = streamed.status_code
    return statuses


def _check(samples: list[tuple[str, dict[str, str], float]]) -> None:
    assert value(samples, COUNT, http_route="/api/customers/{customer_id}") == 2
    assert value(samples, COUNT, http_route="/billing/{customer_id}") == 1
    assert value(samples, COUNT, http_route="/archive/{year}/") == 1
    assert value(samples, COUNT, http_route="/api/v2/articles/{slug}") == 1
    assert value(samples, COUNT, http_route="__unmatched__", http_response_status_code="404") == 2
    assert (
        value(
            samples,
            COUNT,
            http_route="/boom",
            http_response_status_code="500",
            error_type="RuntimeError",
        )
        == 1
    )
    assert value(samples, COUNT, http_route="/stream") == 1
    assert value(samples, SUM, http_route="/stream") >= 0.1  # five chunks, 50 ms apart
    assert not [s for n, s, _ in samples if n == COUNT and "2024" in s["http_route"]]


class TestDjango:
    def test_wsgi_server(self, guarded_settings: CollectorRegistry) -> None:
        """Under a WSGI server: templates for path() and re_path(), 404s, 500s, streaming."""
        from django.core.handlers.wsgi import WSGIHandler

        server = make_server("127.0.0.1", 0, WSGIHandler(), _ThreadingServer, _QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            statuses = _drive(url)
            samples = parse(httpx.get(url + "/metrics").text)
        finally:
            server.shutdown()
            server.server_close()
        assert statuses["/boom"] == 500
        assert statuses["/archive/2024/"] == 200
        _check(samples)
        assert value(samples, "http_server_active_requests") == 0

    def test_asgi_server(self, guarded_settings: CollectorRegistry) -> None:
        """Under uvicorn (Django's ASGI handler, async middleware): the same labels."""
        from django.core.handlers.asgi import ASGIHandler

        with UvicornThread(ASGIHandler()) as server:
            statuses = _drive(server.url)
            slow = httpx.get(server.url + "/slow?ms=120", timeout=10)
            wait_for(lambda: value(scrape(guarded_settings), COUNT, http_route="/slow") == 1)
        assert statuses["/boom"] == 500
        assert slow.status_code == 200
        samples = scrape(guarded_settings)
        _check(samples)
        assert value(samples, SUM, http_route="/slow") >= 0.12

    def test_test_client(self, guarded_settings: CollectorRegistry) -> None:
        """Django's own test client goes through the middleware like a server."""
        from django.test import Client

        client = Client()
        assert client.get("/api/customers/5").status_code == 200
        assert (
            value(scrape(guarded_settings), COUNT, http_route="/api/customers/{customer_id}") == 1
        )

    def test_metrics_token(self, portal: None, registry: CollectorRegistry) -> None:
        """The Django middleware serves /metrics with the same protection."""
        from django.test import Client, override_settings

        options = {"registry": registry, "metrics_token": "tok-123"}
        with override_settings(LAUNCHGUARD=options):
            client = Client()
            assert client.get("/metrics").status_code == 401
            ok = client.get("/metrics", headers={"Authorization": "Bearer tok-123"})
        assert ok.status_code == 200
        assert "launchguard_build_info" in ok.content.decode()

    def test_server_timing_follows_debug(self, portal: None, registry: CollectorRegistry) -> None:
        """Under DEBUG the response carries the DB time and count; otherwise it does not."""
        from django.test import Client, override_settings

        with override_settings(DEBUG=True, LAUNCHGUARD={"registry": registry}):
            debug = Client().get("/api/invoices/n-plus-one")
        with override_settings(DEBUG=False, LAUNCHGUARD={"registry": registry}):
            production = Client().get("/api/invoices/n-plus-one")
        assert debug["Server-Timing"].endswith('desc="21 queries"')
        assert "Server-Timing" not in production


LINT = "launchguard_http_lint_findings_total"
LINT_PATHS = ("/reports/uncached", "/promo", "/static/app.3f9a1c.css")


def _lint_counts(samples: list[tuple[str, dict[str, str], float]]) -> dict[tuple[str, str], float]:
    return {(s["http_route"], s["rule"]): v for n, s, v in samples if n == LINT}


def _check_lint(counts: dict[tuple[str, str], float]) -> None:
    """Uncached report: no explicit policy; promo: a cached page setting a cookie (seen in
    ``response.cookies``, not ``response.headers``); the static asset: nothing."""
    assert counts[("/reports/uncached", "no-explicit-freshness")] == 1
    assert counts[("/promo", "shared-cache-set-cookie")] == 1
    assert not [key for key in counts if key[0] == "/static/{filename}"]
    assert not [key for key in counts if key[1] == "nosniff-missing"]  # SecurityMiddleware


class TestDjangoHeaderLint:
    def test_wsgi_server(self, guarded_settings: CollectorRegistry) -> None:
        """Findings of the portal's uncached, cookie and static routes under WSGI."""
        from django.core.handlers.wsgi import WSGIHandler

        server = make_server("127.0.0.1", 0, WSGIHandler(), _ThreadingServer, _QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            statuses = [httpx.get(url + path).status_code for path in LINT_PATHS]
        finally:
            server.shutdown()
            server.server_close()
        assert statuses == [200, 200, 200]
        _check_lint(_lint_counts(scrape(guarded_settings)))

    def test_asgi_server(self, guarded_settings: CollectorRegistry) -> None:
        """The same findings under uvicorn, with Django's original header casing."""
        from django.core.handlers.asgi import ASGIHandler

        with UvicornThread(ASGIHandler()) as server:
            statuses = [httpx.get(server.url + path).status_code for path in LINT_PATHS]
        assert statuses == [200, 200, 200]
        _check_lint(_lint_counts(scrape(guarded_settings)))
