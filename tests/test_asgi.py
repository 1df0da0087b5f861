"""The ASGI adapter, driven in-process with raw ASGI messages and real Starlette/FastAPI apps."""

from __future__ import annotations

import asyncio
import random
import string
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from launchguard import LaunchGuard
from launchguard.asgi import LaunchGuardMiddleware
from launchguard.metrics import DURATION

from .asgi_util import body_of, call, status_of
from .helpers import scrape, series, value

pytestmark = pytest.mark.anyio

COUNT = DURATION + "_count"
SUM = DURATION + "_sum"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def unavailable(request: Request) -> Response:
    return PlainTextResponse("down", status_code=503)


async def not_modified(request: Request) -> Response:
    return Response(status_code=304, headers={"ETag": '"v1"'})


async def slow_background(request: Request) -> Response:
    return PlainTextResponse("done", background=BackgroundTask(asyncio.sleep, 0.3))


async def slow_stream(request: Request) -> Response:
    async def chunks() -> Any:
        for i in range(3):
            await asyncio.sleep(0.05)
            yield f"chunk {i}\n"

    return StreamingResponse(chunks())


def starlette_app() -> Starlette:
    org = Starlette(routes=[Route("/users/{user_id:int}", ok)])
    return Starlette(
        routes=[
            Route("/", ok),
            Route("/items/{item_id:int}", ok, methods=["GET"]),
            Route("/boom", boom),
            Route("/down", unavailable),
            Route("/cached", not_modified),
            Route("/background", slow_background),
            Route("/stream", slow_stream),
            Mount("/orgs/{org}", app=org),
            Mount("/static", app=PlainTextResponse("asset")),
        ]
    )


def without_request_id(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the app sent them: the guard's X-Request-ID header taken out."""
    out = []
    for message in messages:
        if message["type"] == "http.response.start":
            headers = [h for h in message["headers"] if h[0] != b"x-request-id"]
            message = {**message, "headers": headers}
        out.append(message)
    return out


def guarded(registry: CollectorRegistry, app: Any = None, **options: Any) -> LaunchGuardMiddleware:
    guard = LaunchGuard(service="test", registry=registry, environ={}, **options)
    return guard.asgi(app or starlette_app())


class TestRecording:
    async def test_records_route_method_and_status(self, registry: CollectorRegistry) -> None:
        """A request is counted under its route template, method and status."""
        app = guarded(registry)
        assert status_of(await call(app, "/items/42")) == 200
        samples = scrape(registry)
        assert (
            value(
                samples,
                COUNT,
                http_route="/items/{item_id}",
                http_request_method="GET",
                http_response_status_code="200",
                error_type="",
            )
            == 1
        )
        assert value(samples, SUM, http_route="/items/{item_id}") > 0

    async def test_parameterised_mount_gets_its_template(self, registry: CollectorRegistry) -> None:
        """A mount with a parameter is labelled with the template, not the value."""
        app = guarded(registry)
        await call(app, "/orgs/acme/users/7")
        await call(app, "/orgs/globex/users/8")
        samples = scrape(registry)
        assert value(samples, COUNT, http_route="/orgs/{org}/users/{user_id}") == 2
        assert not [s for s in series(samples, COUNT) if "acme" in s["http_route"]]

    async def test_many_mount_prefixes_stay_bounded(
        self, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each organisation's prefix is remembered with the route, up to a bound; past it the
        memory starts again and every label stays the template."""
        from launchguard import routes

        monkeypatch.setattr(routes, "_MAX_KNOWN_ROUTES", 8)
        app = guarded(registry)
        for i in range(30):
            await call(app, f"/orgs/org{i}/users/{i}")
            await call(app, "/items/1")
        assert len(app._routes._by_route) <= 8
        samples = scrape(registry)
        assert value(samples, COUNT, http_route="/orgs/{org}/users/{user_id}") == 30
        assert value(samples, COUNT, http_route="/items/{item_id}") == 30
        assert {s["http_route"] for s in series(samples, COUNT)} == {
            "/orgs/{org}/users/{user_id}",
            "/items/{item_id}",
        }

    async def test_mounted_plain_app_is_labelled_with_path_placeholder(
        self, registry: CollectorRegistry
    ) -> None:
        """A mounted non-router app (static files) is ``/static/{path}``."""
        app = guarded(registry)
        await call(app, "/static/app.css")
        assert value(scrape(registry), COUNT, http_route="/static/{path}") == 1

    async def test_method_not_allowed_keeps_template(self, registry: CollectorRegistry) -> None:
        """A 405 from a partial match is labelled with the route it matched."""
        app = guarded(registry)
        assert status_of(await call(app, "/items/1", "POST")) == 405
        samples = scrape(registry)
        assert (
            value(samples, COUNT, http_route="/items/{item_id}", http_response_status_code="405")
            == 1
        )

    async def test_unknown_method_is_other(self, registry: CollectorRegistry) -> None:
        """A method outside the HTTP registry is recorded as ``_OTHER``."""
        app = guarded(registry)
        await call(app, "/", "BREW")
        samples = scrape(registry)
        assert value(samples, COUNT, http_request_method="_OTHER") == 1
        assert not [s for s in series(samples, COUNT) if s["http_request_method"] == "BREW"]

    async def test_head_and_not_modified(self, registry: CollectorRegistry) -> None:
        """HEAD and 304 responses are recorded with their status and pass unchanged."""
        app = guarded(registry)
        head = await call(app, "/", "HEAD")
        assert status_of(head) == 200
        bare = await call(starlette_app(), "/", "HEAD")
        assert without_request_id(head) == bare
        cached = await call(app, "/cached")
        assert status_of(cached) == 304
        samples = scrape(registry)
        assert value(samples, COUNT, http_request_method="HEAD", http_route="/") == 1
        assert value(samples, COUNT, http_response_status_code="304") == 1

    async def test_in_flight_gauge_returns_to_zero(self, registry: CollectorRegistry) -> None:
        """The in-flight gauge goes up during a request and back down after."""
        seen: list[float] = []

        async def peek(request: Request) -> Response:
            seen.append(value(scrape(registry), "http_server_active_requests"))
            return PlainTextResponse("x")

        app = guarded(registry, Starlette(routes=[Route("/", peek)]))
        await call(app, "/")
        assert seen == [1.0]
        assert value(scrape(registry), "http_server_active_requests") == 0


class TestErrors:
    async def test_exception_before_response_is_500_once_and_reraised(
        self, registry: CollectorRegistry
    ) -> None:
        """An exception before the response is one 500 with error_type, re-raised unchanged."""
        inner = starlette_app()
        caught: list[BaseException] = []

        async def catching(scope: Any, receive: Any, send: Any) -> None:
            try:
                await inner.router(scope, receive, send)
            except BaseException as exc:
                caught.append(exc)
                raise

        app = guarded(registry, catching)
        with pytest.raises(RuntimeError, match="boom") as info:
            await call(app, "/boom")
        assert info.value is caught[0]
        samples = scrape(registry)
        assert value(samples, COUNT) == 1
        assert (
            value(samples, COUNT, http_response_status_code="500", error_type="RuntimeError") == 1
        )

    async def test_add_middleware_sees_exception_inside_server_error_middleware(
        self, registry: CollectorRegistry
    ) -> None:
        """Inside Starlette's error handling the exception is recorded and still re-raised."""
        app = starlette_app()
        guard = LaunchGuard(service="test", registry=registry, environ={})
        app.add_middleware(LaunchGuardMiddleware, guard=guard)
        with pytest.raises(RuntimeError):
            await call(app, "/boom")
        samples = scrape(registry)
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

    async def test_exception_after_response_started_keeps_status(
        self, registry: CollectorRegistry
    ) -> None:
        """An exception after the response started keeps the sent status and sets error_type."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise ValueError("midway")

        with pytest.raises(ValueError, match="midway"):
            await call(guarded(registry, app), "/")
        samples = scrape(registry)
        assert value(samples, COUNT, http_response_status_code="200", error_type="ValueError") == 1

    async def test_server_error_status_sets_error_type(self, registry: CollectorRegistry) -> None:
        """A 5xx without an exception has error_type set to the status code."""
        await call(guarded(registry), "/down")
        assert value(scrape(registry), COUNT, http_route="/down", error_type="503") == 1

    async def test_success_has_empty_error_type(self, registry: CollectorRegistry) -> None:
        """Successful requests carry no error_type."""
        await call(guarded(registry), "/")
        assert {s["error_type"] for s in series(scrape(registry), COUNT)} == {""}

    async def test_disconnect_before_response_is_499(self, registry: CollectorRegistry) -> None:
        """A client gone before the response is recorded as 499."""

        async def waits_for_client(request: Request) -> Response:
            while not await request.is_disconnected():  # noqa: ASYNC110 - polling is the point
                await asyncio.sleep(0.01)
            return PlainTextResponse("nobody listens")

        app = guarded(registry, Starlette(routes=[Route("/wait", waits_for_client)]))
        await call(app, "/wait", disconnect=True)
        samples = scrape(registry)
        assert value(samples, COUNT, http_route="/wait", http_response_status_code="499") == 1
        assert value(samples, COUNT, http_response_status_code="200") == 0


class TestTiming:
    async def test_background_task_time_is_excluded(self, registry: CollectorRegistry) -> None:
        """Background work after the last body byte does not count as latency."""
        await call(guarded(registry), "/background")
        assert value(scrape(registry), SUM, http_route="/background") < 0.2

    async def test_streaming_time_is_included(self, registry: CollectorRegistry) -> None:
        """The duration runs to the last streamed chunk."""
        messages = await call(guarded(registry), "/stream")
        assert body_of(messages) == b"chunk 0\nchunk 1\nchunk 2\n"
        assert value(scrape(registry), SUM, http_route="/stream") >= 0.14


class TestPassThrough:
    async def test_websocket_untouched(self, registry: CollectorRegistry) -> None:
        """Websocket scopes reach the app with the very same objects."""
        seen: list[tuple[Any, Any, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append((scope, receive, send))

        async def receive() -> dict[str, Any]:
            return {}

        async def send(message: Any) -> None:
            pass

        scope = {"type": "websocket", "path": "/metrics"}
        await guarded(registry, app)(scope, receive, send)
        assert seen == [(scope, receive, send)]
        assert value(scrape(registry), COUNT) == 0

    async def test_lifespan_messages_unchanged(self, registry: CollectorRegistry) -> None:
        """Lifespan: same scope and send, and every message arrives as the server sent it."""
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        received: list[Any] = []
        sent: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert scope is lifespan_scope
            for _ in incoming:
                received.append(await receive())
                await send({"type": received[-1]["type"] + ".complete"})

        async def receive() -> dict[str, Any]:
            return incoming[len(received)]

        async def send(message: Any) -> None:
            sent.append(message)

        lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
        await guarded(registry, app)(lifespan_scope, receive, send)
        assert all(a is b for a, b in zip(received, incoming, strict=True))
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    async def test_excluded_paths_are_not_recorded(self, registry: CollectorRegistry) -> None:
        """``exclude_paths`` reach the app but are never recorded."""
        app = guarded(registry, exclude_paths=["/"])
        assert status_of(await call(app, "/")) == 200
        assert value(scrape(registry), COUNT) == 0


class TestBounded:
    async def test_random_paths_add_one_series(self, registry: CollectorRegistry) -> None:
        """10,000 random unmatched paths share one label set."""
        app = guarded(registry)
        rng = random.Random(7)
        for _ in range(10_000):
            path = "/" + "".join(rng.choices(string.ascii_letters + "/%.-", k=rng.randint(1, 40)))
            await call(app, path)
        samples = scrape(registry)
        labels = series(samples, COUNT)
        assert len(labels) <= 2  # the 404s, plus 307s for trailing-slash redirects
        assert {s["http_route"] for s in labels} == {"__unmatched__"}
        assert value(samples, COUNT) == 10_000

    async def test_route_cap_overflows(self, registry: CollectorRegistry) -> None:
        """Past ``max_routes`` distinct templates, requests count under ``__overflow__``."""
        routes = [Route(f"/r{i}", ok) for i in range(5)]
        app = guarded(registry, Starlette(routes=routes), max_routes=3)
        for i in range(5):
            await call(app, f"/r{i}")
        routes_seen = {s["http_route"] for s in series(scrape(registry), COUNT)}
        assert routes_seen == {"/r0", "/r1", "/r2", "__overflow__"}


class TestFastAPI:
    def app(self) -> FastAPI:
        app = FastAPI()
        articles = APIRouter(prefix="/articles")

        @articles.get("/{slug}")
        def article(slug: str) -> dict[str, str]:
            return {"slug": slug}

        api = APIRouter(prefix="/api")
        api.include_router(articles)
        app.include_router(api)
        admin = FastAPI()

        @admin.get("/users/{user_id}")
        def user(user_id: int) -> dict[str, int]:
            return {"id": user_id}

        app.mount("/admin", admin)
        return app

    async def test_nested_routers_and_mounts(self, registry: CollectorRegistry) -> None:
        """Included routers and mounted apps get their full template."""
        app = self.app()
        guard = LaunchGuard(service="test", registry=registry, environ={})
        app.add_middleware(LaunchGuardMiddleware, guard=guard)
        for path in ("/api/articles/hello", "/api/articles/world", "/admin/users/3", "/docs"):
            assert status_of(await call(app, path)) == 200
        routes = {s["http_route"]: s for s in series(scrape(registry), COUNT)}
        assert set(routes) == {"/api/articles/{slug}", "/admin/users/{user_id}", "/docs"}

    async def test_one_router_included_twice(self, registry: CollectorRegistry) -> None:
        """The same route object under two prefixes: each request gets its own prefix's
        template, however the requests alternate (a route's label is remembered per route
        and FastAPI inclusion)."""
        app = FastAPI()
        items = APIRouter()

        @items.get("/items/{item_id}")
        def item(item_id: int) -> dict[str, int]:
            return {"id": item_id}

        app.include_router(items, prefix="/v1")
        app.include_router(items, prefix="/v2")
        app.add_middleware(
            LaunchGuardMiddleware, guard=LaunchGuard(service="t", registry=registry, environ={})
        )
        for path in ("/v1/items/1", "/v2/items/2", "/v2/items/3", "/v1/items/4", "/v1/items/5"):
            assert status_of(await call(app, path)) == 200
        samples = scrape(registry)
        assert {s["http_route"] for s in series(samples, COUNT)} == {
            "/v1/items/{item_id}",
            "/v2/items/{item_id}",
        }
        assert value(samples, COUNT, http_route="/v1/items/{item_id}") == 3
        assert value(samples, COUNT, http_route="/v2/items/{item_id}") == 2

    async def test_wrapped_from_outside(self, registry: CollectorRegistry) -> None:
        """``guard.asgi(app)`` outside FastAPI resolves the same templates."""
        app = LaunchGuard(service="test", registry=registry, environ={}).asgi(self.app())
        await call(app, "/api/articles/hello")
        await call(app, "/admin/users/3")
        await call(app, "/api/articles/hello/")  # a trailing-slash redirect
        routes = {s["http_route"] for s in series(scrape(registry), COUNT)}
        assert routes == {"/api/articles/{slug}", "/admin/users/{user_id}", "__unmatched__"}
