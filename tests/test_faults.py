"""Faults inside the guard never reach the request; missing extras fail with a clear message."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard, _internal

from .asgi_util import body_of, call, status_of
from .helpers import scrape, value

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def production_mode() -> Any:
    """Internal errors swallowed, as in production (the suite re-raises them otherwise)."""
    _internal.RERAISE = False
    yield
    _internal.RERAISE = True


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello", headers={"X-App": "1"})


class TestInternalErrors:
    async def test_failing_route_resolver(
        self, registry: CollectorRegistry, production_mode: None, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A route resolver that raises leaves the response as is; counted, logged once."""

        def broken(scope: Any) -> str:
            raise ZeroDivisionError("resolver bug")

        guard = LaunchGuard(registry=registry, environ={}, route_resolver=broken)
        app = guard.asgi(Starlette(routes=[Route("/", hello)]))
        with caplog.at_level(logging.WARNING, logger="launchguard"):
            for _ in range(3):
                messages = await call(app, "/")
                assert (status_of(messages), body_of(messages)) == (200, b"hello")
        samples = scrape(registry)
        assert value(samples, "launchguard_internal_errors_total", component="routes") == 3
        assert len([r for r in caplog.records if "internal error in routes" in r.message]) == 1
        # The request itself is still recorded, under the unmatched label.
        assert value(samples, "http_server_request_duration_seconds_count") == 3

    async def test_failing_metrics_store(
        self,
        registry: CollectorRegistry,
        production_mode: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A failing metrics store does not change the response.

        A fault injected with monkeypatch: a store that raises cannot be caused from outside.
        """
        guard = LaunchGuard(registry=registry, environ={})
        app = guard.asgi(Starlette(routes=[Route("/", hello)]))

        def explode(*args: Any) -> None:
            raise RuntimeError("store down")

        monkeypatch.setattr(guard.timer, "_record", explode)
        messages = await call(app, "/")
        assert (status_of(messages), body_of(messages)) == (200, b"hello")
        assert (
            value(scrape(registry), "launchguard_internal_errors_total", component="metrics") == 1
        )

    async def test_reraised_under_tests(self, registry: CollectorRegistry) -> None:
        """The suite's fixture re-raises internal errors, so they cannot hide."""

        def broken(scope: Any) -> str:
            raise ZeroDivisionError("resolver bug")

        guard = LaunchGuard(registry=registry, environ={}, route_resolver=broken)
        with pytest.raises(ZeroDivisionError):
            await call(guard.asgi(Starlette(routes=[Route("/", hello)])), "/")


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("launchguard.integrations.flask", "flask", "flask"),
        ("launchguard.integrations.django", "django", "django"),
    ],
)
def test_missing_framework_names_the_extra(module: str, package: str, extra: str) -> None:
    """Importing an integration without its framework says which extra to install."""
    # sys.modules[name] = None makes `import name` fail as if the package were not installed.
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingExtraError")
    assert f"pip install launchguard[{extra}]" in out.stdout
