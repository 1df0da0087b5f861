"""The apps ``bench_e2e.py`` serves: one route, the variant chosen by ``LG_BENCH_VARIANT``.

    LG_BENCH_VARIANT=launchguard uvicorn --factory --app-dir benchmarks e2e_apps:asgi
    LG_BENCH_VARIANT=pfe gunicorn --chdir benchmarks 'e2e_apps:wsgi()'

ASGI (Starlette): ``bare``, ``metrics`` (launchguard's request metrics alone), ``launchguard``
(everything on, the access log written by ``launchguard.logging.configure()`` to /dev/null),
``pfi`` (prometheus-fastapi-instrumentator). WSGI (Flask): ``bare``, ``metrics``,
``launchguard``, ``pfe`` (prometheus-flask-exporter).
"""

from __future__ import annotations

import os
from typing import Any


def _variant() -> str:
    return os.environ.get("LG_BENCH_VARIANT", "bare")


def _guard() -> Any:
    from prometheus_client import CollectorRegistry

    import launchguard.logging
    from launchguard import LaunchGuard, queries

    launchguard.logging.configure(stream=open(os.devnull, "w"), json=True)  # noqa: SIM115
    queries.hook_installed()  # as if a database hook were installed: a ledger per request
    return LaunchGuard(service="bench", release="bench-1", registry=CollectorRegistry(), environ={})


def _metrics_guard() -> Any:
    """Request metrics alone: the in-process benchmark's own metrics-only guard."""
    from bench_middleware import metrics_only_guard

    return metrics_only_guard()


def asgi() -> Any:
    """The Starlette app of the variant."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Any) -> Any:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    variant = _variant()
    if variant == "launchguard":
        from launchguard.asgi import LaunchGuardMiddleware

        app.add_middleware(LaunchGuardMiddleware, guard=_guard())
    elif variant == "metrics":
        from launchguard.asgi import LaunchGuardMiddleware

        app.add_middleware(LaunchGuardMiddleware, guard=_metrics_guard())
    elif variant == "pfi":
        from prometheus_client import CollectorRegistry
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(registry=CollectorRegistry()).instrument(app)
    elif variant != "bare":
        raise ValueError(f"unknown ASGI variant {variant!r}")
    return app


def wsgi() -> Any:
    """The Flask app of the variant."""
    from flask import Flask

    app = Flask("bench")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return "ok"

    variant = _variant()
    if variant == "launchguard":
        from launchguard.integrations.flask import init_app

        init_app(app, _guard())
    elif variant == "metrics":
        from launchguard.integrations.flask import init_app

        init_app(app, _metrics_guard())
    elif variant == "pfe":
        from prometheus_client import CollectorRegistry
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app, registry=CollectorRegistry())
    elif variant != "bare":
        raise ValueError(f"unknown WSGI variant {variant!r}")
    return app
