"""Health endpoints as users reach them: through the middleware, on real servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.health import custom_check, postgres_check, redis_check

from .asgi_util import body_of, call, status_of
from .helpers import PG_DSN, UvicornThread, free_port, require_service, scrape, value

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


def guard(registry: CollectorRegistry, **options: Any) -> LaunchGuard:
    return LaunchGuard(service="portal", registry=registry, environ={}, **options)


class TestThroughTheMiddleware:
    async def test_liveness_up_while_dependencies_down(self, registry: CollectorRegistry) -> None:
        """/healthz stays 200 while every dependency is down; /readyz is 503."""
        port = closed_port()
        checks = [
            postgres_check(f"postgresql://u:pw@127.0.0.1:{port}/db", timeout=0.5),
            redis_check(f"redis://127.0.0.1:{port}/0", timeout=0.5),
        ]
        app = guard(registry, checks=checks).asgi(Starlette(routes=[Route("/", hello)]))
        live = await call(app, "/healthz")
        started = time.monotonic()
        ready = await call(app, "/readyz")
        assert (status_of(live), status_of(ready)) == (200, 503)
        assert time.monotonic() - started < 1.5
        assert json.loads(body_of(ready))["status"] == "fail"
        assert b"pw" not in body_of(ready)

    async def test_real_postgres_and_redis_pass(self, registry: CollectorRegistry) -> None:
        """Against the real PostgreSQL and Redis, readiness passes with details when allowed."""
        require_service("PostgreSQL", "127.0.0.1", 5432)
        require_service("Redis", "127.0.0.1", 6379)
        checks = [postgres_check(PG_DSN), redis_check("redis://127.0.0.1:6379/0")]
        app = guard(registry, checks=checks, health_details="always").asgi(
            Starlette(routes=[Route("/", hello)])
        )
        messages = await call(app, "/readyz")
        body = json.loads(body_of(messages))
        assert status_of(messages) == 200
        assert body["status"] == "pass"
        assert {key.split(":")[0] for key in body["checks"]} == {"postgres", "redis"}
        headers = dict(next(m for m in messages if m["type"] == "http.response.start")["headers"])
        assert headers[b"content-type"] == b"application/health+json"
        assert headers[b"cache-control"] == b"no-store"

    async def test_non_critical_failure_warns(self, registry: CollectorRegistry) -> None:
        """A failing non-critical check answers warn with 200."""
        checks = [custom_check(lambda: False, name="search", critical=False)]
        app = guard(registry, checks=checks).asgi(Starlette(routes=[Route("/", hello)]))
        messages = await call(app, "/readyz")
        assert status_of(messages) == 200
        assert json.loads(body_of(messages))["status"] == "warn"

    async def test_head_and_not_recorded(self, registry: CollectorRegistry) -> None:
        """HEAD gets headers only; probes never show up in the request metrics."""
        app = guard(registry).asgi(Starlette(routes=[Route("/", hello)]))
        head = await call(app, "/readyz", "HEAD")
        assert (status_of(head), body_of(head)) == (200, b"")
        await call(app, "/healthz")
        assert value(scrape(registry), "http_server_request_duration_seconds_count") == 0

    async def test_paths_configurable_and_off(self, registry: CollectorRegistry) -> None:
        """Paths are configurable; ``off`` hands the path to the app."""
        app = guard(registry, health_path="/live", ready_path="off").asgi(
            Starlette(routes=[Route("/readyz", hello)])
        )
        assert status_of(await call(app, "/live")) == 200
        assert body_of(await call(app, "/readyz")) == b"hello"

    def test_wsgi(self, registry: CollectorRegistry) -> None:
        """The WSGI adapter serves the same endpoints (sync evaluation, shared)."""
        from werkzeug.test import Client

        def app(environ: Any, start_response: Any) -> list[bytes]:
            start_response("200 OK", [])
            return [b"app"]

        checks = [custom_check(lambda: True, name="db")]
        client = Client(
            guard(registry, checks=checks, health_details="token", health_token="t0k").wsgi(app)
        )
        public = client.get("/readyz")
        private = client.get("/readyz", headers={"Authorization": "Bearer t0k"})
        assert public.status_code == private.status_code == 200
        assert "checks" not in public.json
        assert "db:responseTime" in private.json["checks"]

    def test_single_flight_under_a_probe_storm(self, registry: CollectorRegistry) -> None:
        """1,000 readiness requests from 50 concurrent probes through uvicorn: one check run."""
        runs = []

        def counted() -> bool:
            runs.append(1)
            return True

        app = guard(registry, checks=[custom_check(counted, name="db")], health_cache_ttl=30).asgi(
            Starlette(routes=[Route("/", hello)])
        )

        async def storm(url: str) -> list[int]:
            # 50 probes on 50 connections, 20 requests each. (Queueing 1,000 requests on one
            # httpx pool instead is slow: its pool scans every waiter on each release.)
            statuses: list[int] = []
            limits = httpx.Limits(max_connections=50)
            timeout = httpx.Timeout(30.0)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

                async def probe() -> None:
                    for _ in range(20):
                        statuses.append((await client.get("/readyz")).status_code)

                await asyncio.gather(*(probe() for _ in range(50)))
            return statuses

        with UvicornThread(app) as server:
            statuses = asyncio.run(storm(server.url))
        assert statuses == [200] * 1000
        assert len(runs) == 1


@pytest.mark.slow
def test_readiness_fails_on_sigterm_before_uvicorn_stops_accepting() -> None:
    """SIGTERM: /readyz turns 503 while uvicorn still accepts, then the server exits."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.apps.drain:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        seen: list[int | str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                seen.append(httpx.get(url + "/readyz", timeout=1).status_code)
            except httpx.TransportError:
                seen.append("refused")
                break
            time.sleep(0.05)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert 503 in seen, seen
    assert seen.index(503) < seen.index("refused")
    assert 200 not in seen[seen.index(503) :]
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert proc.returncode in (0, -signal.SIGTERM)
