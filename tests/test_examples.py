"""The example portals users copy from, run under real servers with the guard on.

The examples use the global registry (as a user's app does), so each test reads the change in
the scraped counts over its own requests.
"""

from __future__ import annotations

import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from launchguard.metrics import DURATION

from .helpers import UvicornThread, parse, value

COUNT = DURATION + "_count"
pytestmark = pytest.mark.slow

PATHS = [
    "/",
    "/dashboard",
    "/billing/3",
    "/billing/9999",
    "/api/customers",
    "/api/customers/4",
    "/api/invoices/n-plus-one",
    "/api/invoices/fixed",
    "/reports/uncached",
    "/stream",
    "/slow?ms=10",
    "/boom",
    "/api/v2/articles/launch-day",
    "/no/such/page",
]

EXPECTED = {
    "/": 1,
    "/dashboard": 1,
    "/billing/{customer_id}": 2,
    "/api/customers": 1,
    "/api/customers/{customer_id}": 1,
    "/api/invoices/n-plus-one": 1,
    "/api/invoices/fixed": 1,
    "/reports/uncached": 1,
    "/stream": 1,
    "/slow": 1,
    "/boom": 1,
    "/api/v2/articles/{slug}": 1,
    "__unmatched__": 1,
}


def counts(url: str) -> dict[str, float]:
    samples = parse(httpx.get(url + "/metrics").text)
    return {route: value(samples, COUNT, http_route=route) for route in EXPECTED}


def drive(url: str) -> dict[str, int]:
    statuses = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for path in PATHS:
            # After an unhandled error uvicorn closes the connection: send that one alone.
            headers = {"Connection": "close"} if path == "/boom" else None
            statuses[path] = client.get(path, headers=headers).status_code
    return statuses


def check(before: dict[str, float], after: dict[str, float], statuses: dict[str, int]) -> None:
    assert statuses["/boom"] == 500
    assert statuses["/billing/9999"] == 404
    assert statuses["/api/invoices/n-plus-one"] == 200
    assert {route: after[route] - before[route] for route in EXPECTED} == EXPECTED


def test_fastapi_portal(tmp_path: Path) -> None:
    """FastAPI example under uvicorn: nested routers, mounts, 404s and errors labelled."""
    from examples.fastapi_portal.app import create_app

    with UvicornThread(create_app(f"sqlite:///{tmp_path / 'portal.db'}")) as server:
        before = counts(server.url)
        statuses = drive(server.url)
        admin = httpx.get(server.url + "/admin/users/3")
        after = counts(server.url)
        samples = parse(httpx.get(server.url + "/metrics").text)
    check(before, after, statuses)
    assert admin.status_code == 200
    assert value(samples, COUNT, http_route="/admin/users/{user_id}") >= 1


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_flask_portal(tmp_path: Path) -> None:
    """Flask example under a threaded WSGI server: URL rules, 404s, errors, a static asset."""
    from examples.flask_portal.app import create_app

    app = create_app(str(tmp_path / "portal.db"))
    server = make_server("127.0.0.1", 0, app, _ThreadingServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        before = counts(url)
        statuses = drive(url)
        after = counts(url)
        asset = httpx.get(url + "/static/app.3f9a1c.css")
        samples = parse(httpx.get(url + "/metrics").text)
    finally:
        server.shutdown()
        server.server_close()
    check(before, after, statuses)
    assert asset.status_code == 200
    assert value(samples, COUNT, http_route="/static/{filename}") >= 1
