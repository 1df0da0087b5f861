"""asyncpg: count and time every statement, with the line of code that issued it.

Usage::

    from launchguard.integrations.asyncpg import GuardedConnection

    pool = await asyncpg.create_pool(dsn, connection_class=GuardedConnection)
    conn = await asyncpg.connect(dsn, connection_class=GuardedConnection)

``GuardedConnection`` records ``execute``, ``executemany``, ``fetch``, ``fetchrow``,
``fetchval`` and ``fetchmany`` as they return, inside the awaiting code, so findings carry the
calling line (prepared statements and cursors are not counted: use the query logger for
those). For a connection you did not create, :func:`instrument_connection` uses asyncpg's query
logger instead: it sees prepared statements and cursors too, but asyncpg calls the logger from
the event loop a moment later, so findings have no call site, a ``Server-Timing`` header may
miss the last statement (the metrics do not), and a statement that fails because the connection
was lost is not reported by asyncpg at all.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from time import perf_counter
from typing import Any, TypeVar

from .._extras import MissingExtraError

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("asyncpg", "postgres") from exc

from .. import queries
from ..queries import record_query

__all__ = ["GuardedConnection", "instrument_connection", "uninstrument_connection"]

C = TypeVar("C", bound=asyncpg.Connection)
_Method = Callable[..., Coroutine[Any, Any, Any]]
# Announced on import, not on the first connection: a connection opened inside the first
# request would otherwise find no ledger open for that request. The query logger's deferred
# delivery is announced when a connection first uses it.
queries.hook_installed()
_logger_announced = False


def _timed(method: _Method, many: bool = False) -> _Method:
    async def timed(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        started = perf_counter()
        failed = True
        try:
            result = await method(self, query, *args, **kwargs)
            failed = False
            return result
        finally:
            record_query(
                query,
                None if many else args,
                perf_counter() - started,
                orm="asyncpg",
                failed=failed,
                many=many,
            )

    timed.__name__ = method.__name__
    timed.__doc__ = method.__doc__
    return timed


class GuardedConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection whose statements are recorded (pass as ``connection_class``)."""

    execute = _timed(asyncpg.Connection.execute)
    executemany = _timed(asyncpg.Connection.executemany, many=True)
    fetch = _timed(asyncpg.Connection.fetch)
    fetchrow = _timed(asyncpg.Connection.fetchrow)
    fetchval = _timed(asyncpg.Connection.fetchval)
    fetchmany = _timed(asyncpg.Connection.fetchmany, many=True)


def _log(record: Any) -> None:
    record_query(
        record.query,
        record.args,
        record.elapsed,
        orm="asyncpg",
        failed=record.exception is not None,
    )


def instrument_connection(conn: C) -> C:
    """Record every statement of an existing ``conn`` through asyncpg's query logger."""
    # asyncpg's ConnectionMeta makes isinstance() true for any Connection: ask the type.
    if issubclass(type(conn), GuardedConnection):
        return conn
    loggers = getattr(conn, "_query_loggers", ())
    if any(getattr(callback, "cb", None) is _log for callback in loggers):
        return conn
    global _logger_announced
    conn.add_query_logger(_log)
    if not _logger_announced:
        _logger_announced = True
        queries.hook_installed(deferred=True)
    return conn


def uninstrument_connection(conn: asyncpg.Connection) -> None:
    """Stop recording ``conn``'s statements (logger-based instrumentation)."""
    conn.remove_query_logger(_log)
