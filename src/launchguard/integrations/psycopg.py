"""psycopg 3: count and time every statement of a connection (sync or async).

Usage::

    from launchguard.integrations.psycopg import instrument_connection

    conn = instrument_connection(psycopg.connect(dsn))            # or an AsyncConnection
    pool = ConnectionPool(dsn, configure=instrument_connection)   # psycopg_pool

psycopg has no statement hook, so the connection's ``cursor_factory`` is set to a subclass of
the one it had that times ``execute``/``executemany`` (``connection.execute`` goes through it
too). Calling it twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from time import perf_counter
from typing import Any, TypeVar

from .._extras import MissingExtraError

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("psycopg", "postgres") from exc

from .. import queries
from ..queries import record_query

__all__ = ["instrument_connection"]

C = TypeVar("C", psycopg.Connection[Any], psycopg.AsyncConnection[Any])
_subclasses: dict[type, type] = {}
# Announced on import, not on the first connection: a connection opened inside the first
# request would otherwise find no ledger open for that request.
queries.hook_installed()


def _sql_text(query: Any, cursor: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    try:  # psycopg.sql.Composable
        return str(query.as_string(cursor))
    except Exception:
        return repr(query)


def _sync_cursor(base: type) -> type:
    class GuardedCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            started = perf_counter()
            failed = True
            try:
                result = super().execute(query, params, **kwargs)
                failed = False
                return result
            finally:
                record_query(
                    _sql_text(query, self),
                    params,
                    perf_counter() - started,
                    orm="psycopg",
                    failed=failed,
                )

        def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> Any:
            started = perf_counter()
            failed = True
            try:
                result = super().executemany(query, params_seq, **kwargs)
                failed = False
                return result
            finally:
                record_query(
                    _sql_text(query, self),
                    None,
                    perf_counter() - started,
                    orm="psycopg",
                    failed=failed,
                    many=True,
                )

    GuardedCursor.__name__ = GuardedCursor.__qualname__ = f"Guarded{base.__name__}"
    return GuardedCursor


def _async_cursor(base: type) -> type:
    class GuardedAsyncCursor(base):  # type: ignore[misc]
        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            started = perf_counter()
            failed = True
            try:
                result = await super().execute(query, params, **kwargs)
                failed = False
                return result
            finally:
                record_query(
                    _sql_text(query, self),
                    params,
                    perf_counter() - started,
                    orm="psycopg",
                    failed=failed,
                )

        async def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> Any:
            started = perf_counter()
            failed = True
            try:
                result = await super().executemany(query, params_seq, **kwargs)
                failed = False
                return result
            finally:
                record_query(
                    _sql_text(query, self),
                    None,
                    perf_counter() - started,
                    orm="psycopg",
                    failed=failed,
                    many=True,
                )

    GuardedAsyncCursor.__name__ = GuardedAsyncCursor.__qualname__ = f"Guarded{base.__name__}"
    return GuardedAsyncCursor


def instrument_connection(conn: C) -> C:
    """Record every statement of ``conn`` (returned, for chaining and pool ``configure=``)."""
    base = conn.cursor_factory
    if getattr(base, "_launchguard", False):
        return conn
    guarded = _subclasses.get(base)
    if guarded is None:
        make = _async_cursor if isinstance(conn, psycopg.AsyncConnection) else _sync_cursor
        guarded = _subclasses[base] = make(base)
        guarded._launchguard = True  # type: ignore[attr-defined]
    conn.cursor_factory = guarded
    return conn
