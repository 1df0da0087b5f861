"""Tiny apps for the gunicorn tests; each answers with its worker's pid."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard

guard = LaunchGuard(service="multi")


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


wsgi = guard.wsgi(wsgi_app)


async def item(request: Request) -> Response:
    return PlainTextResponse(str(os.getpid()))


asgi = guard.asgi(Starlette(routes=[Route("/items/{item_id}", item)]))
