"""Request context: the request id (and trace ids) of the request being served.

The middleware accepts an incoming ``X-Request-ID`` when it is well formed (1-128 characters of
letters, digits and ``-_.:@``) and does not look like a secret, or makes one, echoes it in the
response, and keeps it in a ContextVar for the whole request, so every log line written
meanwhile can carry it - in async code, in threads the framework runs sync code in
(``run_in_threadpool``, ``sync_to_async``), and under threaded WSGI servers.
``asyncio.to_thread`` and ``loop.run_in_executor`` with ``contextvars.copy_context().run``
keep it too; a bare ``ThreadPoolExecutor.submit`` does not.

    from launchguard.context import current_request_id

    log.info("charging card", request_id=current_request_id())
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from .tracing import current_span

__all__ = [
    "current_exchange",
    "current_request_id",
    "new_request_id",
    "trace_ids",
    "valid_request_id",
]

_VALID = re.compile(r"[A-Za-z0-9._:@\-]{1,128}")

#: The request id of the request being served, if any.
request_id_var: ContextVar[str | None] = ContextVar("launchguard_request_id", default=None)

#: The ``timing.Exchange`` of the request being served, kept only while :data:`track_exchange`
#: is on (the Sentry event processor reads it to tag events with the route and query counts).
exchange_var: ContextVar[Any] = ContextVar("launchguard_exchange", default=None)
#: Set by ``launchguard.integrations.sentry.enrich_events()``; off, requests skip the ContextVar.
track_exchange = False


def current_exchange() -> Any:
    """The ``timing.Exchange`` of the request being served (only while Sentry enrichment is on)."""
    return exchange_var.get()


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return request_id_var.get()


#: Request ids made ahead, from one ``os.urandom`` read per :data:`_ID_BATCH` ids.
_ids: Iterator[str] = iter(())
_ID_BATCH = 256


def new_request_id() -> str:
    """A fresh random request id (32 hex characters from ``os.urandom``).

    Ids are cut from one read of 4 KiB, so a request does not pay a system call for its own
    (``next`` on a list iterator is atomic: threads never share an id). A forked child
    (gunicorn workers) drops the parent's unused ids, so no two processes hand out the same."""
    global _ids
    try:
        return next(_ids)
    except StopIteration:
        block = os.urandom(16 * _ID_BATCH).hex()
        _ids = iter([block[i : i + 32] for i in range(32, len(block), 32)])
        return block[:32]


def _forget_ids() -> None:
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_forget_ids)


def valid_request_id(value: str | None) -> bool:
    """True for an incoming id we may keep: 1-128 of ``[A-Za-z0-9._:@-]``."""
    return value is not None and _VALID.fullmatch(value) is not None


def trace_ids(span: Any = None) -> tuple[str, str] | None:
    """(trace_id, span_id) of ``span``, else of the active OpenTelemetry span, when
    OpenTelemetry is in use."""
    try:
        if span is None:
            span = current_span()  # None at once when there is no span (the common case)
            if span is None:
                return None
        context = span.get_span_context()
    except Exception:
        return None
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
