"""The ASGI adapter: pure ASGI middleware, observing the response by wrapping ``send``.

Usage::

    from launchguard import LaunchGuard

    app = LaunchGuard(service="portal").asgi(app)
    # or, for Starlette / FastAPI:
    app.add_middleware(LaunchGuardMiddleware, guard=LaunchGuard(service="portal"))

Websocket scopes pass straight through; lifespan messages reach the app unchanged (the guard
only notes startup, to install its SIGTERM drain, and shutdown). Nothing is buffered: every
message goes to the server as the app sends it.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

from . import drain, queries
from ._types import ASGIApp, Message, Receive, Scope, Send
from .headerlint import FLAG_AUTHORIZATION, FLAG_COOKIE, FLAG_HTTPS, TrustedPeers, forwarded_https
from .routes import AsgiRoutes
from .timing import Exchange

if TYPE_CHECKING:
    from ._guard import LaunchGuard

__all__ = ["LaunchGuardMiddleware"]

# What a request header read per request is, beyond the FLAG_* bits (all below _REQUEST_ID).
_REQUEST_ID = 8
_FORWARDED_FOR = 9
_FORWARDED_PROTO = 10


class LaunchGuardMiddleware:
    """Times every HTTP request of ``app`` and serves the guard's endpoints."""

    def __init__(self, app: ASGIApp, guard: LaunchGuard | None = None) -> None:
        if guard is None:
            from ._guard import LaunchGuard

            guard = LaunchGuard()
        self.app = app
        self.guard = guard
        self._timer = guard.timer
        self._errors = guard.errors
        self._routes = AsgiRoutes(app, guard.route_labels, guard.config.route_resolver)
        self._endpoints = guard.endpoints
        self._skip = frozenset(guard.config.exclude_paths)
        self._server_timing = guard.config.server_timing
        self._rid_header = guard.config.request_id_header.lower().encode("latin-1")
        self._forwarded = bool(guard.config.trusted_proxies)
        self._request_ids = guard.config.request_ids
        #: The access log needs the request's path, query and client; metrics alone do not.
        self._facts = guard.config.access_log
        self._lint = guard.linter is not None
        self._trusted = TrustedPeers(guard.config.trusted_proxies)
        #: Request headers read per request -> what they are (see __call__).
        self._wanted: dict[bytes, int] = {}
        if self._request_ids:
            self._wanted[self._rid_header] = _REQUEST_ID
        if self._lint:
            self._wanted[b"authorization"] = FLAG_AUTHORIZATION
            self._wanted[b"cookie"] = FLAG_COOKIE
        if self._forwarded:
            self._wanted[b"x-forwarded-for"] = _FORWARDED_FOR
            if self._lint:
                self._wanted[b"x-forwarded-proto"] = _FORWARDED_PROTO
        self._rewrite_start = self._request_ids or self._server_timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, self._lifespan_receive(receive), send)
            else:
                await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = self._endpoints.get(path)
        if endpoint is not None:
            await self._serve_endpoint(endpoint, scope, send)
            return
        if path in self._skip:
            await self.app(scope, receive, send)
            return
        routes = self._routes
        if routes.needs_app:
            routes.note_app(scope)
        entry_root = scope.get("root_path", "")
        incoming_id = forwarded_for = proto = None
        flags = 0
        wanted = self._wanted
        if wanted:
            try:
                for name, value in scope.get("headers", ()):
                    kind = wanted.get(name)
                    if kind is not None:
                        if kind < _REQUEST_ID:
                            flags |= kind
                        elif kind == _REQUEST_ID:
                            incoming_id = value.decode("latin-1")
                        elif kind == _FORWARDED_FOR:
                            forwarded_for = value.decode("latin-1")
                        else:
                            proto = value
            except (AttributeError, TypeError, ValueError):
                pass  # not pairs of bytes: the guard reads no more of them; the app answers
        exchange = self._timer.begin(scope["method"], incoming_id)
        exchange.path = path
        if self._lint:
            if proto is None:
                if scope.get("scheme") == "https":
                    flags |= FLAG_HTTPS
            elif forwarded_https(proto) and self._peer(scope) in self._trusted:
                flags |= FLAG_HTTPS
            exchange.flags = flags
        if self._facts:
            query = scope.get("query_string")
            if query:
                exchange.query = query.decode("latin-1")
            if self._forwarded:  # the client address is logged only behind a trusted proxy
                exchange.client = self._peer(scope)
                exchange.forwarded_for = forwarded_for
        if exchange.span is not None:  # for the span's annotation at the last body message
            exchange.span_scope = (scope, entry_root)
        # The closures below capture four names (exchange, receive, send, self): each captured
        # name is a cell made per request, so everything else comes through self or exchange.

        async def guarded_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not exchange.complete:
                exchange.disconnected = True
            return message

        async def guarded_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                exchange.headers = message.get("headers", ())
                if self._rewrite_start:  # our headers added to a copy (the app's is its own)
                    message = self._with_our_headers(message, exchange)
            elif (
                kind == "http.response.body" and not message.get("more_body", False)
            ) or kind == "http.response.pathsend":
                where = exchange.span_scope  # a span: OpenTelemetry's middleware ends it now
                if where is not None:
                    self._annotate_span(where[0], where[1], exchange)
                try:
                    await send(message)
                except OSError:
                    exchange.disconnected = True
                    raise
                exchange.end = perf_counter()  # Exchange.body_done(), inline (per request)
                exchange.complete = True
                return
            try:
                await send(message)
            except OSError:
                exchange.disconnected = True
                raise

        raised: BaseException | None = None
        try:
            await self.app(scope, guarded_receive, guarded_send)
            if queries.deferred_hooks and exchange.ledger is not None:
                await asyncio.sleep(0)  # let asyncpg's call_soon query loggers run first
        except BaseException as exc:
            raised = exc
            raise
        finally:  # once, whether the app returned or raised (then it is re-raised unchanged)
            try:
                exchange.route = routes.resolve(scope, entry_root)
            except Exception as error:
                self._errors.record("routes", error)
            self._timer.finish(exchange, raised)

    def _with_our_headers(self, message: Message, exchange: Exchange) -> Message:
        """A copy of the response start ``message`` with the request id (unless the app sent
        its own, in any case) and Server-Timing added."""
        headers = list(exchange.headers)
        request_id = exchange.request_id
        if request_id:
            rid_header = self._rid_header
            rid_size = len(rid_header)
            for name, _ in headers:  # the app's own id header wins (any case)
                if len(name) == rid_size and name.lower() == rid_header:
                    break
            else:
                headers.append((rid_header, request_id.encode("latin-1")))
        if self._server_timing:
            timing = exchange.server_timing()
            if timing is not None:
                headers.append((b"server-timing", timing.encode()))
        return {**message, "headers": headers}

    @staticmethod
    def _peer(scope: Scope) -> str | None:
        client = scope.get("client")
        return client[0] if client else None

    def _annotate_span(self, scope: Scope, entry_root: str, exchange: Exchange) -> None:
        try:
            route = self._routes.resolve(scope, entry_root)
        except Exception as error:
            self._errors.record("routes", error)
            return
        self._timer.annotate_span(exchange, route)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        """``receive`` for the lifespan scope: messages pass unchanged; at startup the
        SIGTERM drain is installed (the server's own handler is in place by then)."""

        health = self.guard.health

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                drain.install()
            elif message["type"] == "lifespan.shutdown":
                health.start_draining()
            return message

        return lifespan_receive

    async def _serve_endpoint(self, endpoint: str, scope: Scope, send: Send) -> None:
        headers = _headers(scope)
        client = scope.get("client")
        status, response_headers, body = await self.guard.serve(
            endpoint,
            scope["method"],
            accept=headers.get("accept", ""),
            accept_encoding=headers.get("accept-encoding", ""),
            authorization=headers.get("authorization", ""),
            client=client[0] if client else None,
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response_headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the guard's endpoints read, lower-cased, decoded as latin-1."""
    wanted = {b"accept", b"accept-encoding", b"authorization"}
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        name = bytes(name).lower()
        if name in wanted:
            key = name.decode("latin-1")
            text = bytes(value).decode("latin-1")
            found[key] = f"{found[key]}, {text}" if key in found else text
    return found
