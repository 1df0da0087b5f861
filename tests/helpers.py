"""Test helpers: scrapes parsed by prometheus-client's own parser, real servers on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    """Every sample of an exposition, via prometheus-client's parser."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def scrape(registry: CollectorRegistry) -> list[Sample]:
    return parse(generate_latest(registry).decode())


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        v
        for n, lbls, v in samples
        if n == name and all(lbls.get(k) == x for k, x in labels.items())
    )


def series(samples: list[Sample], name: str) -> list[dict[str, str]]:
    return [lbls for n, lbls, _ in samples if n == name]


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        return int(sock.getsockname()[1])


class UvicornThread:
    """A real uvicorn server on 127.0.0.1, in a thread of the test process."""

    def __init__(self, app: Any, **options: Any) -> None:
        import uvicorn

        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options.setdefault("log_level", "warning")
        options.setdefault("lifespan", "off")
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


PG_DSN = os.environ.get("LAUNCHGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def require_service(name: str, host: str, port: int) -> None:
    """Skip (on a user's machine) or fail (in CI) when a service is not listening."""
    import pytest

    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if IN_CI:
            pytest.fail(message + "; CI must run this test")
        pytest.skip(message)
