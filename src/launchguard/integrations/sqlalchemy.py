"""SQLAlchemy: count and time every statement of an engine (sync or async).

Usage::

    from launchguard.integrations.sqlalchemy import instrument_engine

    instrument_engine(engine)        # an Engine, or an AsyncEngine (via its sync_engine)

Statements that fail are counted too (``handle_error``). Calling it twice is a no-op;
:func:`uninstrument_engine` removes the listeners.
"""

from __future__ import annotations

import weakref
from time import perf_counter
from typing import Any

from .._extras import MissingExtraError

try:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("sqlalchemy", "sqlalchemy") from exc

from .. import queries
from ..queries import current_ledger

__all__ = ["instrument_engine", "uninstrument_engine"]

_instrumented: weakref.WeakSet[Engine] = weakref.WeakSet()


def _sync_engine(engine: Any) -> Engine:
    sync = getattr(engine, "sync_engine", engine)
    if not isinstance(sync, Engine):
        raise TypeError(f"instrument_engine() takes an Engine or AsyncEngine, not {engine!r}")
    return sync


def _before(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    ledger = current_ledger()
    if ledger is not None:
        context._launchguard = (ledger, perf_counter())


def _after(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    entry = getattr(context, "_launchguard", None)
    if entry is not None:
        ledger, started = entry
        ledger.add(
            statement, parameters, perf_counter() - started, "sqlalchemy", False, executemany
        )


def _error(context: Any) -> None:
    entry = getattr(context.execution_context, "_launchguard", None)
    if entry is None or context.statement is None:  # no ledger, or failed before a statement
        return
    ledger, started = entry
    ledger.add(context.statement, context.parameters, perf_counter() - started, "sqlalchemy", True)


def instrument_engine(engine: Any) -> None:
    """Record every statement ``engine`` runs into the current request's ledger."""
    sync = _sync_engine(engine)
    if sync in _instrumented:
        return
    event.listen(sync, "before_cursor_execute", _before)
    event.listen(sync, "after_cursor_execute", _after)
    event.listen(sync, "handle_error", _error)
    _instrumented.add(sync)
    queries.hook_installed()


def uninstrument_engine(engine: Any) -> None:
    """Remove what :func:`instrument_engine` added."""
    sync = _sync_engine(engine)
    if sync not in _instrumented:
        return
    event.remove(sync, "before_cursor_execute", _before)
    event.remove(sync, "after_cursor_execute", _after)
    event.remove(sync, "handle_error", _error)
    _instrumented.discard(sync)
    queries.hook_removed()
