"""An app for the drain test: readiness must fail on SIGTERM before uvicorn stops accepting."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


app = LaunchGuard(service="drain", drain_delay=1.5).asgi(Starlette(routes=[Route("/", hello)]))
