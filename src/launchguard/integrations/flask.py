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

    def label_response(response: flask.Response) -> flask.Response:
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
        if not response.is_streamed:
            exchange.body_done()  # the body is in memory: record when the app returns
        return response

    def note_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
        exchange = flask.request.environ.get(EXCHANGE_KEY)
        if exchange is not None:
            exchange.error_type = type(exception).__qualname__

    original = app.wsgi_app
    app.wsgi_app = LaunchGuardWSGI(original, guard=guard)  # type: ignore[method-assign, assignment]
    app.after_request_funcs.setdefault(None, []).append(label_response)
    flask.got_request_exception.connect(note_exception, app, weak=False)
    app.extensions[_EXTENSION] = {
        "guard": guard,
        "original": original,
        "after": label_response,
        "on_exception": note_exception,
    }
    return guard


def remove(app: flask.Flask) -> None:
    """Undo :func:`init_app` (tests, reloads)."""
    installed = app.extensions.pop(_EXTENSION, None)
    if installed is None:
        return
    app.wsgi_app = installed["original"]  # type: ignore[method-assign]
    funcs = app.after_request_funcs.get(None, [])
    if installed["after"] in funcs:
        funcs.remove(installed["after"])
    flask.got_request_exception.disconnect(installed["on_exception"], app)
