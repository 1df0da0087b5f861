"""Sentry: no secret in any event, transaction or breadcrumb the SDK sends.

Usage, either at ``sentry_sdk.init``::

    from launchguard.integrations import sentry as lg_sentry

    sentry_sdk.init(dsn=..., before_send=lg_sentry.before_send,
                    before_send_transaction=lg_sentry.before_send_transaction,
                    before_breadcrumb=lg_sentry.before_breadcrumb)

or after it, keeping your own hooks (ours run after yours, so nothing they add escapes)::

    lg_sentry.install()

The whole event is masked: message and ``logentry``, exception values, stack-frame variables,
``extra``, ``tags``, ``contexts``, ``request`` (URL, query string, headers, cookies, data),
breadcrumbs and transaction spans, by key name (``password``, ``db_password``,
``X-Api-Key``...) and by value (tokens, keys, URLs with credentials).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._extras import MissingExtraError

try:
    import sentry_sdk
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("sentry-sdk", "sentry") from exc

from ..redact import Redactor, default_redactor

__all__ = ["before_breadcrumb", "before_send", "before_send_transaction", "install", "redact_event"]

Hook = Callable[[Any, Any], Any]


def redact_event(event: Any, redactor: Redactor | None = None) -> Any:
    """A masked copy of a Sentry event (or breadcrumb); the original is not changed."""
    return (redactor or default_redactor()).redact_value(event)


def before_send(event: Any, hint: Any) -> Any:
    """``before_send`` hook: the event, masked."""
    return redact_event(event)


def before_send_transaction(event: Any, hint: Any) -> Any:
    """``before_send_transaction`` hook: the transaction and its spans, masked."""
    return redact_event(event)


def before_breadcrumb(crumb: Any, hint: Any) -> Any:
    """``before_breadcrumb`` hook: the breadcrumb, masked."""
    return redact_event(crumb)


def _chain(user: Hook | None, ours: Hook) -> Hook:
    if user is None or getattr(user, "_launchguard", False):
        return ours

    def chained(item: Any, hint: Any) -> Any:
        item = user(item, hint)
        return None if item is None else ours(item, hint)

    chained._launchguard = True  # type: ignore[attr-defined]
    return chained


def install() -> bool:
    """Add the masking hooks to the running Sentry client, after the user's own hooks.

    Returns False when Sentry is not initialised yet (call it again after ``init``). Calling it
    twice is a no-op.
    """
    client = sentry_sdk.get_client()
    if not client.is_active():
        return False
    options = client.options
    for key, ours in (
        ("before_send", before_send),
        ("before_send_transaction", before_send_transaction),
        ("before_breadcrumb", before_breadcrumb),
    ):
        current = options.get(key)
        if current is ours or getattr(current, "_launchguard", False):
            continue
        options[key] = _chain(current, ours)
    return True
