"""Where a query is counted: the per-request query ledger and its findings.

Database hooks (``launchguard.integrations.sqlalchemy``, ``.django``, ``.psycopg``,
``.asyncpg``, ``.sqlite3``) call :func:`record_query` for every statement; it lands in the
:class:`QueryLedger` of the current request, held in a ContextVar (never on the middleware), so
concurrent requests, threads and tasks keep their own counts. Outside a request, open one
yourself::

    from launchguard.queries import query_ledger

    with query_ledger() as ledger:
        run_nightly_job()
    print(ledger.count, ledger.seconds, ledger.findings())

Per statement the ledger does a few dict lookups: the SQL shape comes from a bounded cache keyed
by the raw SQL string, and the calling line of application code is looked up (a cheap frame
walk, not the ``inspect`` module's full stack) only once a shape starts repeating. Parameter
values are never stored: only a hash of (statement, parameters), to tell duplicates apart.

Findings, per request:

- ``n_plus_one``: one SELECT shape issued at least ``n_plus_one_threshold`` times from the same
  line of application code (grouped by shape and call site, not by adjacency); writes are not
  counted unless ``n_plus_one_writes`` is on;
- ``duplicate_query``: the same statement with the same parameters run more than once;
- ``chatty_request``: more statements than the route's query budget;
- ``slow_query``: one statement slower than ``slow_query`` seconds.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, Literal

from ._throttle import Throttle
from .fingerprint import Shape, ShapeCache

__all__ = [
    "Finding",
    "QueryLedger",
    "QueryRules",
    "current_ledger",
    "query_ledger",
    "record_query",
]

FindingKind = Literal["n_plus_one", "duplicate_query", "chatty_request", "slow_query"]

_current: ContextVar[QueryLedger | None] = ContextVar("launchguard_query_ledger", default=None)
_shapes = ShapeCache()
#: Receivers of every request ledger that closed with no parent ledger in its context
#: (requests served in another thread, seen by the test helpers).
_listeners: list[Callable[[QueryLedger], None]] = []
_listeners_lock = threading.Lock()
#: How many database hooks are installed; with none, requests skip the ledger entirely.
hooks_installed = 0
#: Hooks that report a statement after the awaiting code resumed (asyncpg's query logger runs
#: its callbacks with ``call_soon``); the ASGI adapter yields once before closing the ledger.
deferred_hooks = 0


def hook_installed(*, deferred: bool = False) -> None:
    """Integrations call this when they install a hook (``deferred`` as above)."""
    global hooks_installed, deferred_hooks
    hooks_installed += 1
    deferred_hooks += deferred


def hook_removed(*, deferred: bool = False) -> None:
    """Integrations call this when they remove a hook."""
    global hooks_installed, deferred_hooks
    hooks_installed = max(0, hooks_installed - 1)
    deferred_hooks = max(0, deferred_hooks - deferred)


HINTS: dict[str, str] = {
    "sqlalchemy": (
        "load the relationship eagerly: select(Parent).options(selectinload(Parent.children)) "
        "(joinedload for many-to-one)"
    ),
    "django": (
        "use select_related() for foreign keys and one-to-one, prefetch_related() for reverse "
        "and many-to-many relations"
    ),
    "sql": (
        "fetch the rows in one statement (WHERE key = ANY(...), IN (...), or a JOIN) instead of "
        "one statement per row"
    ),
}


@dataclass(frozen=True)
class QueryRules:
    """Thresholds of the findings (the guard builds them from its configuration)."""

    n_plus_one_threshold: int = 5
    n_plus_one_writes: bool = False
    query_budget: int = 20
    route_query_budgets: Mapping[str, int] = field(default_factory=dict)
    slow_query: float = 0.5

    def budget(self, route: str | None) -> int:
        """The query budget of ``route``."""
        if route is not None:
            return self.route_query_budgets.get(route, self.query_budget)
        return self.query_budget


@dataclass(frozen=True)
class Finding:
    """One problem a request's queries show."""

    kind: FindingKind
    route: str | None
    fingerprint: str
    sql: str
    count: int
    seconds: float
    call_site: str | None
    hint: str

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain data (for logs, reports, Sentry)."""
        return {
            "kind": self.kind,
            "route": self.route,
            "fingerprint": self.fingerprint,
            "sql": self.sql,
            "count": self.count,
            "db_ms": round(self.seconds * 1000, 3),
            "call_site": self.call_site,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        where = f" at {self.call_site}" if self.call_site else ""
        return (
            f"{self.kind}: {self.count} x {self.sql!r}{where} "
            f"({self.seconds * 1000:.1f} ms) - {self.hint}"
        )


class _Group:
    """The statements of one SQL shape within one ledger."""

    __slots__ = ("count", "first_key", "keys", "max_seconds", "orm", "seconds", "shape", "sites")

    def __init__(self, shape: Shape, orm: str, seconds: float, key: int | None) -> None:
        # Most shapes run once per request: the dicts are made only when a shape repeats.
        self.shape = shape
        self.orm = orm
        self.count = 1
        self.seconds = seconds
        self.max_seconds = seconds
        self.first_key = key
        #: Call site -> count, filled once the shape repeats (the first one is unknown).
        self.sites: dict[str, int] | None = None
        #: Hashes of (statement, parameters) seen, for duplicates; never the values.
        self.keys: dict[int | None, int] | None = None

    def key_counts(self) -> dict[int | None, int]:
        return {self.first_key: 1} if self.keys is None else self.keys

    def site_counts(self) -> dict[str, int]:
        return self.sites or {}

    def copy(self) -> _Group:
        """A copy whose dicts are its own (taken under the ledger's lock, read without it)."""
        copy = _Group(self.shape, self.orm, self.seconds, self.first_key)
        copy.count, copy.max_seconds = self.count, self.max_seconds
        copy.sites = None if self.sites is None else dict(self.sites)
        copy.keys = None if self.keys is None else dict(self.keys)
        return copy


#: The groups of a ledger without statements, shared by all of them and never changed: a
#: ledger's first statement gives it a dict of its own (add and merge check for this one).
_NO_GROUPS: dict[str, _Group] = {}


class QueryLedger:
    """The statements of one request (or job): totals, groups by shape, findings.

    No ``__slots__``: the class attributes are the empty ledger, so opening one per request
    (``object.__new__``, no ``__init__``) costs no attribute writes and no dict."""

    #: One lock for every ledger: a request's statements may come from several threads, and
    #: its critical sections are a few additions (one lock made per request cost more).
    _lock = threading.Lock()
    route: str | None = None
    count = 0
    seconds = 0.0
    errors = 0
    _groups = _NO_GROUPS

    def __init__(self, route: str | None = None) -> None:
        if route is not None:
            self.route = route

    def add(
        self,
        sql: str,
        params: object,
        seconds: float,
        orm: str,
        failed: bool = False,
        many: bool = False,
    ) -> None:
        """Account one statement (hooks call :func:`record_query`, which calls this)."""
        shape = _shapes.get(sql)
        if many:
            key = None
        elif type(params) is tuple:  # the common DB-API case, inlined
            try:
                key = hash((sql, params))
            except TypeError:
                key = None
        else:
            key = _params_key(sql, params)
        with self._lock:
            self.count += 1
            self.seconds += seconds
            if failed:
                self.errors += 1
            groups = self._groups
            group = groups.get(shape.fingerprint)
            if group is None:
                if groups is _NO_GROUPS:
                    groups = self._groups = {}
                groups[shape.fingerprint] = _Group(shape, orm, seconds, key)
                return
            group.count += 1
            group.seconds += seconds
            if seconds > group.max_seconds:
                group.max_seconds = seconds
            keys = group.keys
            if keys is None:
                keys = group.keys = {group.first_key: 1}
            keys[key] = keys.get(key, 0) + 1
        site = call_site()  # the shape repeats: where from?
        if site is not None:
            with self._lock:
                sites = group.sites
                if sites is None:
                    sites = group.sites = {}
                sites[site] = sites.get(site, 0) + 1

    def merge(self, other: QueryLedger) -> None:
        """Add ``other``'s statements to this ledger (a request inside a test's ledger)."""
        with self._lock:
            self.count += other.count
            self.seconds += other.seconds
            self.errors += other.errors
            if other._groups and self._groups is _NO_GROUPS:
                self._groups = {}
            for fingerprint, theirs in other._groups.items():
                ours = self._groups.get(fingerprint)
                if ours is None:
                    ours = self._groups[fingerprint] = _Group(theirs.shape, theirs.orm, 0.0, None)
                    ours.count = 0
                    ours.keys = {}
                keys = ours.key_counts() if ours.keys is None else ours.keys
                sites = ours.sites if ours.sites is not None else {}
                for site, n in theirs.site_counts().items():
                    sites[site] = sites.get(site, 0) + n
                for key, n in theirs.key_counts().items():
                    keys[key] = keys.get(key, 0) + n
                ours.keys, ours.sites = keys, sites
                ours.count += theirs.count
                ours.seconds += theirs.seconds
                ours.max_seconds = max(ours.max_seconds, theirs.max_seconds)

    def shapes(self) -> list[tuple[str, int, float]]:
        """(SQL shape, count, seconds) per shape, most frequent first."""
        with self._lock:
            rows = [(g.shape.sql, g.count, g.seconds) for g in self._groups.values()]
        return sorted(rows, key=lambda row: -row[1])

    def findings(self, rules: QueryRules | None = None) -> list[Finding]:
        """The problems this ledger's statements show, by ``rules`` (defaults if None)."""
        rules = rules or QueryRules()
        found: list[Finding] = []
        with self._lock:  # copies: statements from other threads may still be arriving
            groups = [group.copy() for group in self._groups.values()]
            count, seconds = self.count, self.seconds
        for group in groups:
            shape = group.shape
            hint = HINTS.get(group.orm, HINTS["sql"])
            countable = shape.operation == "SELECT" or rules.n_plus_one_writes
            if countable and group.count >= rules.n_plus_one_threshold:
                for site, n in _sites_with_first(group):
                    if n >= rules.n_plus_one_threshold:
                        found.append(
                            Finding(
                                "n_plus_one",
                                self.route,
                                shape.fingerprint,
                                shape.sql,
                                n,
                                group.seconds * n / group.count,
                                site,
                                hint,
                            )
                        )
            duplicates = sum(
                n - 1 for k, n in group.key_counts().items() if n > 1 and k is not None
            )
            if duplicates:
                found.append(
                    Finding(
                        "duplicate_query",
                        self.route,
                        shape.fingerprint,
                        shape.sql,
                        duplicates + 1,
                        group.seconds,
                        _top_site(group),
                        "run it once and reuse the result",
                    )
                )
            if group.max_seconds > rules.slow_query:
                found.append(
                    Finding(
                        "slow_query",
                        self.route,
                        shape.fingerprint,
                        shape.sql,
                        group.count,
                        group.max_seconds,
                        _top_site(group),
                        "add an index or narrow the query (EXPLAIN ANALYZE it)",
                    )
                )
        budget = rules.budget(self.route)
        if count > budget:
            top = max(groups, key=lambda g: g.count)
            found.append(
                Finding(
                    "chatty_request",
                    self.route,
                    top.shape.fingerprint,
                    top.shape.sql,
                    count,
                    seconds,
                    _top_site(top),
                    f"{count} statements, budget {budget}: batch or cache them",
                )
            )
        return found


def _sites_with_first(group: _Group) -> list[tuple[str | None, int]]:
    """Counts per call site, the shape's first (unsited) statement given to the first site."""
    if not group.sites:
        return [(None, group.count)]
    sites = list(group.sites.items())
    first_site, first_count = sites[0]
    sites[0] = (first_site, first_count + 1)
    return [(site, n) for site, n in sites]


def _top_site(group: _Group) -> str | None:
    sites = group.sites
    return max(sites, key=sites.__getitem__) if sites else None


def _params_key(sql: str, params: object) -> int | None:
    """A hash of (statement, parameters); None when the parameters cannot be hashed."""
    try:
        if isinstance(params, dict):
            return hash((sql, tuple(params.items())))
        if isinstance(params, list):
            return hash((sql, tuple(params)))
        return hash((sql, params))
    except TypeError:
        return None


#: ``current_ledger()``: the ledger statements are recorded into right now, if any (the
#: ContextVar's own getter, a C call: database hooks call it once per statement).
current_ledger: Callable[[], QueryLedger | None] = _current.get


def record_query(
    sql: str,
    params: object,
    seconds: float,
    *,
    orm: str = "sql",
    failed: bool = False,
    many: bool = False,
) -> None:
    """Record one statement into the current ledger (a no-op outside any ledger)."""
    ledger = _current.get()
    if ledger is not None:
        ledger.add(sql, params, seconds, orm, failed, many)


def open_ledger(route: str | None = None) -> tuple[QueryLedger, Token[QueryLedger | None]]:
    """Start a ledger in the current context (the middleware's per-request entry)."""
    ledger = QueryLedger(route)
    return ledger, _current.set(ledger)


def close_ledger(ledger: QueryLedger, token: Token[QueryLedger | None]) -> None:
    """End ``ledger``: restore the previous one and hand the statements on to it or listeners."""
    try:
        _current.reset(token)
    except ValueError:  # closed from another context (a WSGI body closed elsewhere)
        pass
    parent = token.old_value
    if isinstance(parent, QueryLedger):
        parent.merge(ledger)
    elif _listeners:
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(ledger)


@contextmanager
def query_ledger(route: str | None = None) -> Iterator[QueryLedger]:
    """A ledger for code outside requests (jobs, scripts, tests)."""
    ledger, token = open_ledger(route)
    try:
        yield ledger
    finally:
        close_ledger(ledger, token)


@contextmanager
def listening(listener: Callable[[QueryLedger], None]) -> Iterator[None]:
    """Call ``listener`` with every request ledger that closes without a parent (any thread)."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


# ----------------------------------------------------------------------------- call sites


def _library_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    prefixes = {
        paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths
    }
    prefixes.add(os.path.dirname(os.path.abspath(__file__)))
    return (*tuple(sorted(os.path.join(p, "") for p in prefixes)), "<")


_LIBRARY = _library_prefixes()
_is_app: dict[CodeType, bool] = {}


def call_site(max_depth: int = 80) -> str | None:
    """``path:line in function`` of the innermost frame of application code, if any.

    Statements SQLAlchemy's asyncio layer runs inside a greenlet have a stack that ends at the
    greenlet; the walk goes on in the parent greenlet, where the awaiting coroutines are.
    """
    frame: FrameType | None = sys._getframe(2)
    depth = 0
    hops = 0
    while depth < max_depth:
        if frame is None:
            frame = _parent_greenlet_frame(hops)
            hops += 1
            if frame is None:
                return None
        code = frame.f_code
        app = _is_app.get(code)
        if app is None:
            filename = code.co_filename
            app = not filename.startswith(_LIBRARY) and "site-packages" not in filename
            if len(_is_app) < 65536:
                _is_app[code] = app
        if app:
            filename = code.co_filename
            cwd = os.path.join(os.getcwd(), "")
            if filename.startswith(cwd):
                filename = filename[len(cwd) :]
            return f"{filename}:{frame.f_lineno} in {code.co_name}"
        frame = frame.f_back
        depth += 1
    return None


def _parent_greenlet_frame(hops: int) -> FrameType | None:
    greenlet = sys.modules.get("greenlet")
    if greenlet is None or hops > 4:
        return None
    current = greenlet.getcurrent()
    for _ in range(hops + 1):
        current = current.parent
        if current is None:
            return None
    frame: FrameType | None = current.gr_frame
    return frame


# ----------------------------------------------------------------------------- reporting

_logger = logging.getLogger("launchguard.queries")


class QueryReporter:
    """Sends findings on: a counter per (route, kind), a throttled warning log line each."""

    def __init__(
        self,
        count: Callable[[str, str], None],
        *,
        interval: float,
        warn: bool,
    ) -> None:
        self._count = count
        self._throttle = Throttle(interval)
        self.warn = warn

    def report(self, route: str, findings: list[Finding]) -> None:
        """Count every finding; log each (route, kind, shape, call site) once per interval."""
        for finding in findings:
            self._count(route, finding.kind)
            key = (route, finding.kind, finding.fingerprint, finding.call_site)
            if self._throttle.allow(key):
                _logger.warning(
                    "launchguard %s on %s: %s",
                    finding.kind,
                    route,
                    finding,
                    extra={"launchguard_finding": finding.as_dict()},
                )


def warn_about(findings: list[Finding]) -> None:
    """Raise ``findings`` as Python warnings (test suites turn them into errors)."""
    from .warnings import NPlusOneWarning, QueryWarning

    for finding in findings:
        category = NPlusOneWarning if finding.kind == "n_plus_one" else QueryWarning
        warnings.warn(f"launchguard {finding}", category, stacklevel=2)
