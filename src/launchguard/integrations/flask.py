"""Flask integration: one call wires the guard in.

Usage::

    from launchguard import LaunchGuard
    from launchguard.integrations.flask import init_app

    init_app(app, LaunchGuard(service="portal"))

It wraps ``app.wsgi_app`` with the guard, labels each request with its URL rule
(``/users/<int:user_id>`` becomes ``/users/{user_id}``), and records the class of an unhandled
exception that Flask turns into a 500. A response whose body is already in memory is recorded
when the app returns; a streamed one when the server has sent its last chunk. Calling it twice
is a no-op; :func:`remove` undoes it.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from .._extras import MissingExtraError

try:
    import flask
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("flask", "flask") from exc

from ..routes import flask_template
from ..wsgi import EXCHANGE_KEY, LaunchGuardWSGI

if TYPE_CHECKING:
    from .._guard import LaunchGuard

__all__ = ["init_app", "remove"]

_EXTENSION = "launchguard"


def init_app(app: flask.Flask, guard: LaunchGuard | None = None) -> LaunchGuard:
    """Guard ``app``; returns the guard in use (created from the environment if not given)."""
    installed = app.extensions.get(_EXTENSION)
    if installed is not None:
        return installed["guard"]  # type: ignore[no-any-return]
    if guard is None:
        from .._guard import LaunchGuard

        guard = LaunchGuard()
    labels = guard.route_labels
    templates: dict[str, str] = {}

    # Labelled after Flask's own process_response (every after_request function and the
    # session save ran), by wrapping it on the instance rather than registering one more
    # after_request function, which Flask would run through ensure_sync() on every request.
    own_process = app.__dict__.get("process_response")
    process = app.process_response

    def process_response(response: flask.Response) -> flask.Response:
        response = process(response)
        request = cast(Any, flask.request)._get_current_object()  # one proxy lookup, not two
        exchange = request.environ.get(EXCHANGE_KEY)
        if exchange is None:
            return response
        rule = request.url_rule
        if rule is not None:
            label = templates.get(rule.rule)
            if label is None:
                label = templates[rule.rule] = labels.admit(flask_template(rule.rule))
            exchange.route = label
        if not response.is_streamed:  # the body is in memory: record when the app returns
            exchange.end = perf_counter()  # exchange.body_done(), inline (per request)
            exchange.complete = True
        return response

    def note_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
        exchange = flask.request.environ.get(EXCHANGE_KEY)
        if exchange is not None:
            exchange.error_type = type(exception).__qualname__

    original = app.wsgi_app
    app.wsgi_app = LaunchGuardWSGI(original, guard=guard)  # type: ignore[method-assign, assignment]
    app.process_response = process_response  # type: ignore[method-assign]
    flask.got_request_exception.connect(note_exception, app, weak=False)
    app.extensions[_EXTENSION] = {
        "guard": guard,
        "original": original,
        "process_response": process_response,
        "own_process": own_process,
        "on_exception": note_exception,
    }
    return guard


def remove(app: flask.Flask) -> None:
    """Undo :func:`init_app` (tests, reloads)."""
    installed = app.extensions.pop(_EXTENSION, None)
    if installed is None:
        return
    app.wsgi_app = installed["original"]  # type: ignore[method-assign]
    if app.__dict__.get("process_response") is installed["process_response"]:
        if installed["own_process"] is None:
            del app.process_response
        else:
            app.process_response = installed["own_process"]  # type: ignore[method-assign]
    flask.got_request_exception.disconnect(installed["on_exception"], app)
