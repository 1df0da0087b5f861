"""stdlib sqlite3: count and time every statement of a connection.

Usage::

    from launchguard.integrations import sqlite3 as guarded_sqlite3

    conn = guarded_sqlite3.connect("portal.db")          # instead of sqlite3.connect
    # or: sqlite3.connect("portal.db", factory=GuardedConnection)

sqlite3 has no hook that gives statements without their values (its trace callback expands
the parameters into the SQL), so the guard times statements through a connection subclass.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from .. import queries
from ..queries import record_query

__all__ = ["GuardedConnection", "GuardedCursor", "connect"]


class GuardedCursor(sqlite3.Cursor):
    """A cursor whose ``execute``/``executemany`` are recorded."""

    def execute(self, sql: str, parameters: Any = (), /) -> GuardedCursor:
        started = perf_counter()
        failed = True
        try:
            super().execute(sql, parameters)
            failed = False
            return self
        finally:
            record_query(sql, parameters, perf_counter() - started, orm="sqlite3", failed=failed)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> GuardedCursor:
        started = perf_counter()
        failed = True
        try:
            super().executemany(sql, seq_of_parameters)
            failed = False
            return self
        finally:
            record_query(
                sql, None, perf_counter() - started, orm="sqlite3", failed=failed, many=True
            )


class GuardedConnection(sqlite3.Connection):
    """A connection whose statements (``execute``, ``executemany``, cursors) are recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def cursor(self, factory: Any = GuardedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self.cursor().executemany(sql, parameters)


# Announced on import, not on the first connection: a connection opened inside the first
# request would otherwise find no ledger open for that request.
queries.hook_installed()


def connect(database: Any, **kwargs: Any) -> GuardedConnection:
    """``sqlite3.connect`` with statements recorded."""
    kwargs.setdefault("factory", GuardedConnection)
    connection: GuardedConnection = sqlite3.connect(database, **kwargs)
    return connection
