"""Real servers on 127.0.0.1: uvicorn in-process, gunicorn with several workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.metrics import DURATION

from .helpers import UvicornThread, free_port, parse, scrape, value, wait_for

COUNT = DURATION + "_count"
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class TestUvicorn:
    def test_streaming_is_not_buffered(self, registry: CollectorRegistry) -> None:
        """The first chunk reaches the client before the app produces the last one."""
        release = threading.Event()

        async def stream(request: Request) -> Response:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"first\n"
                for _ in range(500):
                    if release.is_set():
                        break
                    await asyncio.sleep(0.01)
                yield b"last\n" if release.is_set() else b"timed out\n"

            return StreamingResponse(chunks(), media_type="text/plain")

        guard = LaunchGuard(service="t", registry=registry, environ={})
        app = guard.asgi(Starlette(routes=[Route("/stream", stream)]))
        with UvicornThread(app) as server, httpx.stream("GET", server.url + "/stream") as response:
            chunks = response.iter_raw()
            first = next(chunks)
            release.set()
            rest = b"".join(chunks)
        assert (first, rest) == (b"first\n", b"last\n")
        wait_for(lambda: value(scrape(registry), COUNT, http_route="/stream") == 1)

    def test_client_disconnect_is_499(self, registry: CollectorRegistry) -> None:
        """A client that hangs up before the response is recorded as 499."""

        async def hang(request: Request) -> Response:
            while not await request.is_disconnected():  # noqa: ASYNC110 - polling is the point
                await asyncio.sleep(0.01)
            return PlainTextResponse("nobody is listening")

        guard = LaunchGuard(service="t", registry=registry, environ={})
        app = guard.asgi(Starlette(routes=[Route("/hang", hang)]))
        with UvicornThread(app) as server:
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(server.url + "/hang", timeout=0.3)
            wait_for(
                lambda: (
                    value(
                        scrape(registry), COUNT, http_route="/hang", http_response_status_code="499"
                    )
                    == 1
                )
            )

    def test_scrape_over_http(self, registry: CollectorRegistry) -> None:
        """/metrics serves text the prometheus parser reads, OpenMetrics, gzip and HEAD."""

        async def hello(request: Request) -> Response:
            return PlainTextResponse("hi")

        guard = LaunchGuard(service="t", registry=registry, environ={})
        app = guard.asgi(Starlette(routes=[Route("/hello/{name}", hello)]))
        with UvicornThread(app) as server:
            for name in ("ann", "bob", "cy"):
                assert httpx.get(f"{server.url}/hello/{name}").text == "hi"
            text = httpx.get(server.url + "/metrics")
            om = httpx.get(
                server.url + "/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            )
            zipped = httpx.get(server.url + "/metrics", headers={"Accept-Encoding": "gzip"})
            head = httpx.head(server.url + "/metrics")
        assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(parse(text.text), COUNT, http_route="/hello/{name}") == 3
        assert value(parse(text.text), COUNT, http_route="/metrics") == 0
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
        assert zipped.headers["content-encoding"] == "gzip"
        assert value(parse(zipped.text), COUNT, http_route="/hello/{name}") == 3
        assert head.status_code == 200
        assert head.content == b""


def _gunicorn(app: str, workers: int, worker_class: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:launchguard.gunicorn",
            "-w",
            str(workers),
            "-k",
            worker_class,
            "-b",
            f"127.0.0.1:{port}",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/metrics", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp_path / "gunicorn.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()


class TestGunicorn:
    @pytest.mark.parametrize(
        ("app", "worker_class", "path"),
        [
            ("tests.apps.multi:wsgi", "sync", "/"),
            ("tests.apps.multi:asgi", "uvicorn.workers.UvicornWorker", "/items/7"),
        ],
    )
    def test_three_workers_sum_to_requests_sent(
        self, tmp_path: Path, app: str, worker_class: str, path: str
    ) -> None:
        """Under gunicorn -w 3 the scrape shows the total of all workers."""
        sent = 90
        pids: set[str] = set()
        for url in _gunicorn(app, 3, worker_class, tmp_path):
            for _ in range(sent):
                # A new connection each time, so the requests spread over the workers.
                pids.add(httpx.get(url + path, headers={"Connection": "close"}).text)
            scrapes = [parse(httpx.get(url + "/metrics").text) for _ in range(6)]
        assert len(pids) >= 2, "requests did not spread over several workers"
        for samples in scrapes:
            assert value(samples, COUNT) == sent
            assert value(samples, "launchguard_build_info", service="multi") == 1
