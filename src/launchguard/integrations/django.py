"""Django integration: one ``MIDDLEWARE`` entry, under WSGI and ASGI servers alike.

Usage, in ``settings.py``::

    MIDDLEWARE = [
        "launchguard.integrations.django.LaunchGuardMiddleware",  # first, to time everything
        ...
    ]
    LAUNCHGUARD = {"service": "portal"}  # any LaunchGuard option; LAUNCHGUARD_* env vars too

Each request is labelled with its URL pattern (``path()`` and ``re_path()`` routes, includes
joined, written ``/articles/{year}/``); the timing ends when the server closes the response, so
streaming and file responses are timed to their last byte.

Every database statement is counted through ``connection.execute_wrappers``, on every
connection of every alias and thread (attached as each one connects), including those that
``sync_to_async`` uses under ASGI; nothing else to configure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from time import perf_counter
from typing import Any

from .._extras import MissingExtraError

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings
    from django.db import connections
    from django.db.backends.signals import connection_created
    from django.http import HttpRequest, HttpResponse
    from django.http.response import HttpResponseBase
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("django", "django") from exc

from .. import queries
from .._config import env_var
from .._guard import LaunchGuard
from ..headerlint import FLAG_HTTPS, TrustedPeers, request_flags
from ..queries import record_query
from ..routes import django_template
from ..timing import Exchange

__all__ = ["LaunchGuardMiddleware", "get_guard", "install_query_hook", "remove_query_hook"]

_ATTR = "_launchguard_exchange"
_guards: dict[str, LaunchGuard] = {}
_guards_lock = threading.Lock()


def get_guard() -> LaunchGuard:
    """The guard built from ``settings.LAUNCHGUARD`` (one per distinct settings value)."""
    options = dict(getattr(settings, "LAUNCHGUARD", None) or {})
    if "server_timing" not in options and env_var("server_timing") not in os.environ:
        options["server_timing"] = bool(settings.DEBUG)  # the DB time in devtools while DEBUG
    key = repr(sorted(options.items()))
    guard = _guards.get(key)
    if guard is None:
        with _guards_lock:
            guard = _guards.get(key)
            if guard is None:
                guard = _guards[key] = LaunchGuard.from_settings(options)
    return guard


def _execute_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    started = perf_counter()
    failed = True
    try:
        result = execute(sql, params, many, context)
        failed = False
        return result
    finally:
        record_query(sql, params, perf_counter() - started, orm="django", failed=failed, many=many)


def _attach(connection: Any, **kwargs: Any) -> None:
    if _execute_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_execute_wrapper)


_hook_installed = False


def install_query_hook() -> None:
    """Count the statements of every Django connection (the middleware calls this)."""
    global _hook_installed
    with _guards_lock:
        if _hook_installed:
            return
        _hook_installed = True
    connection_created.connect(_attach, dispatch_uid="launchguard-queries", weak=False)
    for connection in connections.all(initialized_only=True):
        _attach(connection)
    queries.hook_installed()


def remove_query_hook() -> None:
    """Undo :func:`install_query_hook` (for the connections of this thread)."""
    global _hook_installed
    with _guards_lock:
        if not _hook_installed:
            return
        _hook_installed = False
    connection_created.disconnect(dispatch_uid="launchguard-queries")
    for connection in connections.all(initialized_only=True):
        if _execute_wrapper in connection.execute_wrappers:
            connection.execute_wrappers.remove(_execute_wrapper)
    queries.hook_removed()


class LaunchGuardMiddleware:
    """Times every request, labels it with its URL pattern, serves the guard's endpoints."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.guard = guard = get_guard()
        self._timer = guard.timer
        self._labels = guard.route_labels
        self._templates: dict[str, str] = {}
        self._endpoints = guard.endpoints
        self._skip = frozenset(guard.config.exclude_paths)
        self._server_timing = guard.config.server_timing
        self._rid_header = guard.config.request_id_header
        self._rid_key = "HTTP_" + self._rid_header.upper().replace("-", "_")
        self._lint = guard.linter is not None
        #: The linter and the budget watch (route class) read the response headers.
        self._headers = self._lint or guard.budgets is not None
        self._trusted = TrustedPeers(guard.config.trusted_proxies)
        if guard.config.queries:
            install_query_hook()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        path = request.path_info
        endpoint = self._endpoints.get(path)
        if endpoint is not None:
            return _response(
                self.guard.serve_sync(endpoint, request.method or "", **_admin_headers(request))
            )
        if path in self._skip:
            return self.get_response(request)
        exchange = self._begin(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            self._timer.finish(exchange, exc)
            raise
        return self._watch(response, exchange)

    async def _acall(self, request: HttpRequest) -> Any:
        path = request.path_info
        endpoint = self._endpoints.get(path)
        if endpoint is not None:
            return _response(
                await self.guard.serve(endpoint, request.method or "", **_admin_headers(request))
            )
        get_response: Callable[[HttpRequest], Awaitable[Any]] = self.get_response
        if path in self._skip:
            return await get_response(request)
        exchange = self._begin(request)
        try:
            response = await get_response(request)
        except BaseException as exc:
            self._timer.finish(exchange, exc)
            raise
        return self._watch(response, exchange)

    def _begin(self, request: HttpRequest) -> Exchange:
        meta = request.META
        exchange = self._timer.begin(request.method or "", meta.get(self._rid_key))
        exchange.path = request.path
        exchange.query = meta.get("QUERY_STRING", "")
        exchange.client = meta.get("REMOTE_ADDR")
        exchange.forwarded_for = meta.get("HTTP_X_FORWARDED_FOR")
        if self._lint:
            flags = request_flags(meta, self._trusted)
            if request.is_secure():  # Django's own SECURE_PROXY_SSL_HEADER rule
                flags |= FLAG_HTTPS
            exchange.flags = flags
        setattr(request, _ATTR, exchange)
        return exchange

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        """Label the request with the route its URL matched."""
        exchange: Exchange | None = getattr(request, _ATTR, None)
        match = request.resolver_match
        route = getattr(match, "route", None)
        if exchange is None or not route:
            return
        label = self._templates.get(route)
        if label is None:
            label = self._templates[route] = self._labels.admit(django_template(route))
        exchange.route = label

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        """Note the class of an exception Django is about to turn into an error response."""
        exchange: Exchange | None = getattr(request, _ATTR, None)
        if exchange is not None:
            exchange.error_type = type(exception).__qualname__

    def _watch(self, response: HttpResponseBase, exchange: Exchange) -> HttpResponseBase:
        """Record the request when the server closes the response (after its last byte)."""
        exchange.status = response.status_code
        if self._headers:
            exchange.headers = _ResponseHeaders(response)
        if exchange.request_id and not response.has_header(self._rid_header):
            response[self._rid_header] = exchange.request_id
        if self._server_timing:
            value = exchange.server_timing()
            if value:
                response["Server-Timing"] = value
        timer = self._timer
        close = response.close

        def close_and_record() -> None:
            try:
                close()
            except BaseException as exc:
                exchange.body_done()
                timer.finish(exchange, exc)
                raise
            exchange.body_done()
            timer.finish(exchange, None)

        response.close = close_and_record  # type: ignore[method-assign]
        return response


class _ResponseHeaders:
    """A response's headers as the server will send them (``Set-Cookie`` lines included),
    read when the linter iterates them, after the response is complete."""

    __slots__ = ("_response",)

    def __init__(self, response: HttpResponseBase) -> None:
        self._response = response

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self._response.items()
        for morsel in self._response.cookies.values():
            yield ("Set-Cookie", morsel.output(header="").strip())


def _admin_headers(request: HttpRequest) -> dict[str, Any]:
    meta = request.META
    return {
        "accept": meta.get("HTTP_ACCEPT", ""),
        "accept_encoding": meta.get("HTTP_ACCEPT_ENCODING", ""),
        "authorization": meta.get("HTTP_AUTHORIZATION", ""),
        "client": meta.get("REMOTE_ADDR"),
    }


def _response(answer: tuple[int, list[tuple[str, str]], bytes]) -> HttpResponse:
    status, headers, body = answer
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response
