"""The WSGI adapter: wraps ``start_response`` and the body iterable (PEP 3333).

Usage::

    from launchguard import LaunchGuard

    app = LaunchGuard(service="portal").wsgi(app)

A list or tuple body is complete when the app returns, so it is passed through as it is (the
server keeps its Content-Length shortcut). Any other iterable (generators, ``wsgi.file_wrapper``)
is wrapped: the timing ends when it is exhausted, and ``close()`` is always passed on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from ._types import Environ, OptExcInfo, StartResponse, WSGIApp
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
        self._metrics_path = guard.config.metrics_path if guard.metrics_endpoint else None
        self._skip = frozenset(guard.config.exclude_paths)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self._metrics_path:
            return self._serve_metrics(environ, start_response)
        if path in self._skip:
            return self.app(environ, start_response)
        exchange = self._timer.begin(environ.get("REQUEST_METHOD", ""))
        environ[EXCHANGE_KEY] = exchange

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
        ) -> Callable[[bytes], object]:
            exchange.status = _status_code(status)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, guarded_start_response)
        except BaseException as exc:
            self.finish(environ, exchange, exc)
            raise
        if type(body) is list or type(body) is tuple:
            exchange.body_done()
            self.finish(environ, exchange, None)
            return body
        return _GuardedBody(body, environ, exchange, self)

    def finish(self, environ: Environ, exchange: Exchange, exc: BaseException | None) -> None:
        """Resolve the route (if no integration did) and record the request."""
        if exchange.route is None and self._resolver is not None:
            try:
                template = self._resolver(environ)
                exchange.route = self._labels.admit(template) if template else None
            except Exception as error:
                self._errors.record("routes", error)
        self._timer.finish(exchange, exc)

    def _serve_metrics(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        endpoint = self.guard.metrics_endpoint
        if endpoint is None:  # pragma: no cover - the path is only set when it exists
            return []
        status, headers, body = endpoint.respond(
            environ.get("REQUEST_METHOD", ""),
            accept=environ.get("HTTP_ACCEPT", ""),
            accept_encoding=environ.get("HTTP_ACCEPT_ENCODING", ""),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            client=environ.get("REMOTE_ADDR"),
        )
        start_response(f"{status} {_REASONS.get(status, '')}".rstrip(), headers)
        return [body]


_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 405: "Method Not Allowed"}


def _status_code(status: str) -> int:
    try:
        return int(status[:3])
    except (TypeError, ValueError):
        return 0


class _GuardedBody:
    """A response body that records the request when exhausted and closed."""

    __slots__ = ("_body", "_environ", "_exc", "_exchange", "_iterator", "_owner")

    def __init__(
        self, body: Iterable[bytes], environ: Environ, exchange: Exchange, owner: LaunchGuardWSGI
    ) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._environ = environ
        self._exchange = exchange
        self._owner = owner
        self._exc: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = iter(self._body)
        try:
            return next(iterator)
        except StopIteration:
            self._exchange.body_done()
            raise
        except BaseException as exc:
            self._exc = exc
            raise

    def close(self) -> None:
        exchange = self._exchange
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._exc = self._exc or exc
            raise
        finally:
            if exchange is not None:
                self._exchange = None  # type: ignore[assignment]  # close() may come twice
                if not exchange.complete and self._exc is None and _expects_body(exchange):
                    exchange.disconnected = True  # the server gave up on the body
                self._owner.finish(self._environ, exchange, self._exc)


def _expects_body(exchange: Exchange) -> bool:
    # Servers may skip iterating bodies that must be empty; that is no disconnect.
    return exchange.method != "HEAD" and exchange.status not in (204, 304)
