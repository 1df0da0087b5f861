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
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .._extras import MissingExtraError

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
    from django.http.response import HttpResponseBase
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("django", "django") from exc

from .._guard import LaunchGuard
from ..routes import django_template
from ..timing import Exchange

__all__ = ["LaunchGuardMiddleware", "get_guard"]

_ATTR = "_launchguard_exchange"
_guards: dict[str, LaunchGuard] = {}
_guards_lock = threading.Lock()


def get_guard() -> LaunchGuard:
    """The guard built from ``settings.LAUNCHGUARD`` (one per distinct settings value)."""
    options = getattr(settings, "LAUNCHGUARD", None) or {}
    key = repr(sorted(options.items()))
    guard = _guards.get(key)
    if guard is None:
        with _guards_lock:
            guard = _guards.get(key)
            if guard is None:
                guard = _guards[key] = LaunchGuard.from_settings(options)
    return guard


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
        self._metrics_path = guard.config.metrics_path if guard.metrics_endpoint else None
        self._skip = frozenset(guard.config.exclude_paths)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        path = request.path_info
        if path == self._metrics_path:
            return self._serve_metrics(request)
        if path in self._skip:
            return self.get_response(request)
        exchange = self._timer.begin(request.method or "")
        setattr(request, _ATTR, exchange)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            self._timer.finish(exchange, exc)
            raise
        return self._watch(response, exchange)

    async def _acall(self, request: HttpRequest) -> Any:
        path = request.path_info
        if path == self._metrics_path:
            return self._serve_metrics(request)
        get_response: Callable[[HttpRequest], Awaitable[Any]] = self.get_response
        if path in self._skip:
            return await get_response(request)
        exchange = self._timer.begin(request.method or "")
        setattr(request, _ATTR, exchange)
        try:
            response = await get_response(request)
        except BaseException as exc:
            self._timer.finish(exchange, exc)
            raise
        return self._watch(response, exchange)

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

    def _serve_metrics(self, request: HttpRequest) -> HttpResponse:
        endpoint = self.guard.metrics_endpoint
        if endpoint is None:  # pragma: no cover - the path is only set when it exists
            return HttpResponse(status=404)
        meta = request.META
        status, headers, body = endpoint.respond(
            request.method or "",
            accept=meta.get("HTTP_ACCEPT", ""),
            accept_encoding=meta.get("HTTP_ACCEPT_ENCODING", ""),
            authorization=meta.get("HTTP_AUTHORIZATION", ""),
            client=meta.get("REMOTE_ADDR"),
        )
        response = HttpResponse(body, status=status)
        for name, value in headers:
            response[name] = value
        return response
