"""The Flask integration, through Flask's own test client and a real threaded server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from flask import Flask, Response, stream_with_context
from prometheus_client import CollectorRegistry

from launchguard import LaunchGuard
from launchguard.integrations.flask import init_app, remove
from launchguard.metrics import DURATION

from .helpers import parse, scrape, value

COUNT = DURATION + "_count"


def make_app() -> Flask:
    app = Flask("portal")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(stream_with_context(chunks()))

    return app


def guarded(registry: CollectorRegistry) -> tuple[Flask, LaunchGuard]:
    app = make_app()
    guard = init_app(app, LaunchGuard(service="flask", registry=registry, environ={}))
    return app, guard


class TestFlask:
    def test_rule_template(self, registry: CollectorRegistry) -> None:
        """Requests are labelled with the URL rule, converters written as ``{name}``."""
        app, _ = guarded(registry)
        client = app.test_client()
        for user_id in (1, 2, 3):
            assert client.get(f"/users/{user_id}").json == {"id": user_id}
        missing = client.get("/nope")
        assert (missing.status_code, missing.data[:15]) == (404, b"<!doctype html>")
        samples = scrape(registry)
        assert value(samples, COUNT, http_route="/users/{user_id}") == 3
        assert (
            value(samples, COUNT, http_route="__unmatched__", http_response_status_code="404") == 1
        )

    def test_handled_exception_keeps_its_class(self, registry: CollectorRegistry) -> None:
        """An exception Flask turns into a 500 is recorded with its class."""
        app, _ = guarded(registry)
        response = app.test_client().get("/boom")
        assert response.status_code == 500
        response.close()  # Flask serves error pages as streamed bodies: recorded at the end
        assert value(scrape(registry), COUNT, http_route="/boom", error_type="RuntimeError") == 1

    def test_streaming_response(self, registry: CollectorRegistry) -> None:
        """A streamed response arrives whole and is recorded once it is exhausted."""
        app, _ = guarded(registry)
        response = app.test_client().get("/stream")
        assert response.data == b"ab"
        response.close()
        assert value(scrape(registry), COUNT, http_route="/stream") == 1

    def test_init_app_is_idempotent_and_removable(self, registry: CollectorRegistry) -> None:
        """A second init_app is a no-op; remove() restores the app."""
        app = make_app()
        original = app.wsgi_app
        guard = LaunchGuard(service="flask", registry=registry, environ={})
        assert init_app(app, guard) is guard
        wrapped = app.wsgi_app
        assert init_app(app, LaunchGuard(registry=CollectorRegistry(), environ={})) is guard
        assert app.wsgi_app is wrapped
        app.test_client().get("/users/1")
        assert value(scrape(registry), COUNT) == 1
        remove(app)
        assert app.wsgi_app == original
        app.test_client().get("/users/1")
        assert value(scrape(registry), COUNT) == 1

    def test_metrics_endpoint(self, registry: CollectorRegistry) -> None:
        """/metrics is served by the guard, ahead of the app."""
        app, _ = guarded(registry)
        client = app.test_client()
        client.get("/users/5")
        samples = parse(client.get("/metrics").text)
        assert value(samples, COUNT, http_route="/users/{user_id}") == 1


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_threaded_server_counts_every_request(registry: CollectorRegistry) -> None:
    """Under a threaded WSGI server, concurrent requests are all counted exactly."""
    app, _ = guarded(registry)
    server = make_server("127.0.0.1", 0, app, _ThreadingServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:

        def hammer(worker: int) -> None:
            with httpx.Client() as client:
                for i in range(25):
                    assert client.get(f"{url}/users/{worker * 100 + i}").status_code == 200

        threads = [threading.Thread(target=hammer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        samples = parse(httpx.get(url + "/metrics").text)
    finally:
        server.shutdown()
        server.server_close()
    assert value(samples, COUNT, http_route="/users/{user_id}") == 200
    assert value(samples, "http_server_active_requests") == 0
