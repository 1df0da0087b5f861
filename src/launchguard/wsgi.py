"""The WSGI adapter: wraps ``start_response`` and the body iterable (PEP 3333).

Usage::

    from launchguard import LaunchGuard

    app = LaunchGuard(service="portal").wsgi(app)

A list or tuple body is complete when the app returns, so it is passed through as it is (the
server keeps its Content-Length shortcut); so is a body an integration marked complete (the
Flask one does for non-streamed responses). Any other iterable (generators,
``wsgi.file_wrapper``) is wrapped: the timing ends when it is exhausted, and ``close()`` is
always passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ._types import Environ, OptExcInfo, StartResponse, WSGIApp
from .headerlint import TrustedPeers, request_flags
from .timing import Exchange

if TYPE_CHECKING:
    from ._guard import LaunchGuard

__all__ = ["EXCHANGE_KEY", "LaunchGuardWSGI"]

#: The environ key under which integrations find the request's :class:`Exchange`.
EXCHANGE_KEY = "launchguard.exchange"


class LaunchGuardWSGI:
    """Times every request of the WSGI ``app`` and serves the guard's endpoints."""

    def __init__(self, app: WSGIApp, guard: LaunchGuard | None = None) -> None:
        if guard is None:
            from ._guard import LaunchGuard

            guard = LaunchGuard()
        self.app = app
        self.guard = guard
        self._timer = guard.timer
        self._errors = guard.errors
        self._labels = guard.route_labels
        self._resolver = guard.config.route_resolver
        self._endpoints = guard.endpoints
        self._skip = frozenset(guard.config.exclude_paths) or None
        self._server_timing = guard.config.server_timing
        header = guard.config.request_id_header
        self._rid_header = header
        self._rid_lower = header.lower()
        self._rid_key = "HTTP_" + header.upper().replace("-", "_")
        self._request_ids = guard.config.request_ids
        self._facts = guard.config.access_log
        self._lint = guard.linter is not None
        self._trusted = TrustedPeers(guard.config.trusted_proxies)
        self._forwarded = bool(guard.config.trusted_proxies)
        self._rewrite_start = self._request_ids or self._server_timing

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        endpoint = self._endpoints.get(path)
        if endpoint is not None:
            return self._serve_endpoint(endpoint, environ, start_response)
        if self._skip and path in self._skip:
            return self.app(environ, start_response)
        exchange = self._timer.begin(
            environ.get("REQUEST_METHOD", ""),
            environ.get(self._rid_key) if self._request_ids else None,
        )
        environ[EXCHANGE_KEY] = exchange
        exchange.path = path
        if self._lint:
            exchange.flags = request_flags(environ, self._trusted)
        if self._facts:
            exchange.query = environ.get("QUERY_STRING", "")
            if self._forwarded:  # the client address is logged only behind a trusted proxy
                exchange.client = environ.get("REMOTE_ADDR")
                exchange.forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        rewrite = self._rewrite_start

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
        ) -> Callable[[bytes], object]:
            try:
                exchange.status = int(status[:3])
            except (TypeError, ValueError):
                exchange.status = 0
            exchange.headers = headers
            if rewrite:
                headers = self._headers_with_ours(headers, exchange)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, guarded_start_response)
            if not exchange.complete and type(body) is not list and type(body) is not tuple:
                return _GuardedBody(body, environ, exchange, self)
        except BaseException as exc:
            self.finish(environ, exchange, exc)
            raise
        if not exchange.complete:
            exchange.body_done()
        self.finish(environ, exchange, None)
        return body

    def _headers_with_ours(
        self, headers: list[tuple[str, str]], exchange: Exchange
    ) -> list[tuple[str, str]]:
        """The app's headers plus the request id and Server-Timing (a new list)."""
        extra = []
        if exchange.request_id:
            wanted, size = self._rid_lower, len(self._rid_lower)
            for name, _ in headers:  # the app's own id header wins (any case)
                if len(name) == size and name.lower() == wanted:
                    break
            else:
                extra.append((self._rid_header, exchange.request_id))
        if self._server_timing:
            value = exchange.server_timing()
            if value:
                extra.append(("Server-Timing", value))
        return [*headers, *extra]

    def finish(self, environ: Environ, exchange: Exchange, exc: BaseException | None) -> None:
        """Resolve the route (if no integration did) and record the request."""
        if exchange.route is None and self._resolver is not None:
            try:
                template = self._resolver(environ)
                exchange.route = self._labels.admit(template) if template else None
            except Exception as error:
                self._errors.record("routes", error)
        self._timer.finish(exchange, exc)

    def _serve_endpoint(
        self, endpoint: str, environ: Environ, start_response: StartResponse
    ) -> list[bytes]:
        status, headers, body = self.guard.serve_sync(
            endpoint,
            environ.get("REQUEST_METHOD", ""),
            accept=environ.get("HTTP_ACCEPT", ""),
            accept_encoding=environ.get("HTTP_ACCEPT_ENCODING", ""),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            client=environ.get("REMOTE_ADDR"),
        )
        start_response(f"{status} {_REASONS.get(status, '')}".rstrip(), headers)
        return [body]


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class _GuardedBody:
    """A response body that records the request when it is exhausted (or closed early)."""

    __slots__ = ("_body", "_environ", "_exchange", "_iterator", "_owner")

    def __init__(
        self, body: Iterable[bytes], environ: Environ, exchange: Exchange, owner: LaunchGuardWSGI
    ) -> None:
        self._body = body
        self._iterator = iter(body)
        self._environ = environ
        self._exchange: Exchange | None = exchange
        self._owner = owner

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._iterator)
        except StopIteration:
            exchange = self._exchange
            if exchange is not None:
                exchange.body_done()
                self._record(exchange, None)
            raise
        except BaseException as exc:
            exchange = self._exchange
            if exchange is not None:
                self._record(exchange, exc)
            raise

    def close(self) -> None:
        """Pass ``close()`` on, always; a body closed before its end is an abandoned one."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            exchange = self._exchange
            if exchange is not None:
                self._record(exchange, exc)
            raise
        exchange = self._exchange
        if exchange is not None:
            if _expects_body(exchange):
                exchange.disconnected = True  # the server gave up before the end
            self._record(exchange, None)

    def _record(self, exchange: Exchange, exc: BaseException | None) -> None:
        self._exchange = None  # record once, whatever the server calls next
        self._owner.finish(self._environ, exchange, exc)


def _expects_body(exchange: Exchange) -> bool:
    # Servers may skip iterating bodies that must be empty; that is no disconnect.
    return exchange.method != "HEAD" and exchange.status not in (204, 304)
