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

Every event captured while a request is served is tagged with ``route``, ``request_id`` and
``db_queries`` (the statements so far; ``contexts.launchguard.db_ms`` has their time): the
guard turns this on by itself when ``sentry_sdk`` is imported before it is created;
:func:`install` (or :func:`enrich_events`) turns it on otherwise. Under ASGI the guard knows the
route only once the request ends, so an event raised inside an ASGI app takes the route from
Sentry's own transaction name when that is a route template (``transaction_info.source`` is
``route``).

The guard's alerts (a route over its latency budget, an N+1 finding; see
``launchguard.budgets``) are sent with :func:`capture_alert`, masked whatever hooks are set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._extras import MissingExtraError

try:
    import sentry_sdk
    from sentry_sdk.scope import add_global_event_processor
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("sentry-sdk", "sentry") from exc

from .. import context as lg_context
from ..queries import current_ledger
from ..redact import Redactor, default_redactor

__all__ = [
    "before_breadcrumb",
    "before_send",
    "before_send_transaction",
    "capture_alert",
    "enrich_event",
    "enrich_events",
    "install",
    "redact_event",
]

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


def enrich_event(event: Any, hint: Any) -> Any:
    """Event processor: ``route``, ``request_id`` and ``db_queries`` tags of the request being
    served (tags already set are kept)."""
    exchange = lg_context.current_exchange()
    if exchange is None:
        return event
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    route = exchange.route
    if route is None and (event.get("transaction_info") or {}).get("source") == "route":
        route = event.get("transaction")
    if route:
        tags.setdefault("route", route)
    if exchange.request_id:
        tags.setdefault("request_id", exchange.request_id)
    ledger = exchange.ledger or current_ledger()
    if ledger is not None:
        tags.setdefault("db_queries", str(ledger.count))
        contexts = event.get("contexts")
        if not isinstance(contexts, dict):
            contexts = event["contexts"] = {}
        ours = contexts.setdefault("launchguard", {})
        if isinstance(ours, dict):
            ours.setdefault("db_queries", ledger.count)
            ours.setdefault("db_ms", round(ledger.seconds * 1000, 3))
    return event


_enriching = False


def enrich_events() -> None:
    """Tag every Sentry event with the request it happened in (:func:`enrich_event`), from now
    on. Idempotent; works before or after ``sentry_sdk.init``."""
    global _enriching
    if not _enriching:
        _enriching = True
        add_global_event_processor(enrich_event)
    lg_context.track_exchange = True


def capture_alert(
    message: str,
    *,
    fingerprint: list[str],
    tags: dict[str, str],
    context: dict[str, Any],
    level: str = "warning",
    redactor: Redactor | None = None,
) -> str | None:
    """Send one of the guard's alerts: a message event grouped by ``fingerprint``, with
    ``tags`` and the ``launchguard`` context, masked like every event here (even without
    :func:`install`). Returns the event id, or None if the SDK did not send it."""
    with sentry_sdk.new_scope() as scope:
        scope.add_event_processor(lambda event, hint: redact_event(event, redactor))
        event_id: str | None = scope.capture_message(
            message,
            level=level,  # type: ignore[arg-type]
            fingerprint=fingerprint,
            tags=tags,
            contexts={"launchguard": context},
        )
        return event_id


def install() -> bool:
    """Add the masking hooks to the running Sentry client, after the user's own hooks, and
    tag events with their request (:func:`enrich_events`).

    Returns False when Sentry is not initialised yet (call it again after ``init``). Calling it
    twice is a no-op.
    """
    enrich_events()
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
