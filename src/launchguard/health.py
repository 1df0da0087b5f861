"""Liveness, readiness and startup endpoints in the IETF health format, framework-neutral.

The responses follow the IETF draft "Health Check Response Format for HTTP APIs"
(``application/health+json``): ``pass`` and ``warn`` answer 200, ``fail`` answers 503. The
adapters call :meth:`Health.readiness` (ASGI) or :meth:`Health.readiness_sync` (WSGI threads)
and translate the ``(status, headers, body)`` they return.

Usage::

    from launchguard.health import Health, disk_check, http_check, sqlalchemy_check

    health = Health(
        service="portal",
        version="1.4.2",
        release="2026.11.28",
        checks=[
            sqlalchemy_check(engine),  # critical: a failure fails readiness (503)
            http_check("https://payments.example/ping", name="payments-api"),  # warn only
            disk_check("/var/lib/portal"),
        ],
        details="token",
        token=os.environ["HEALTH_TOKEN"],
    )
    status, headers, body = await health.readiness(method="GET", authorization="")
    health.start_draining()  # on SIGTERM, before the server stops listening: readiness fails

Liveness never runs a check: a shared dependency outage must not restart every instance.
Readiness runs the checks concurrently, each under its own timeout; concurrent callers share one
evaluation and the result is cached for ``cache_ttl`` seconds, so a thousand probes cost the
database one ``SELECT 1``. Outputs never carry a connection string, password or URL: exception
texts are reduced to the exception class and a generic reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hmac
import importlib
import inspect
import json
import math
import re
import shutil
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram

from ._extras import MissingExtraError
from ._internal import InternalErrors

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CONTENT_TYPE",
    "Check",
    "CheckResult",
    "Health",
    "HealthResponse",
    "custom_check",
    "disk_check",
    "django_check",
    "http_check",
    "postgres_check",
    "redis_check",
    "sqlalchemy_check",
]

#: The media type of every health response.
CONTENT_TYPE = "application/health+json"
STATUS = "launchguard_health_check_status"
DURATION = "launchguard_health_check_duration_seconds"

#: ``(status, headers, body)``, as the adapters expect it; the body is empty for HEAD.
HealthResponse = tuple[int, list[tuple[str, str]], bytes]
Status = Literal["pass", "warn", "fail"]

_T = TypeVar("_T")
_STATUSES = ("pass", "warn", "fail")
_GAUGE_VALUE = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5, 5.0)
_DETAILS = ("never", "token", "always")
# How much longer than the slowest check a WSGI caller waits before giving up on the loop.
_SYNC_GRACE = 2.0
_MAX_OUTPUT = 200


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CheckResult:
    """The reading of one check: one entry of the IETF ``checks`` object.

    ``output`` is shown only to callers allowed to see details, never on ``pass``, and is
    scrubbed of anything URL- or DSN-like before it is rendered.
    """

    status: Status
    observed_value: float | int | str | None = None
    observed_unit: str = ""
    output: str = ""
    time: str = field(default_factory=_now_iso)

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, not {self.status!r}")


#: What a :func:`custom_check` callable may return (or an awaitable of it).
CustomResult = bool | CheckResult | None


class Check:
    """One dependency check. Use the constructors below, or subclass and implement :meth:`run`.

    ``critical`` checks fail readiness (503) when they fail; a failing non-critical check turns
    the overall status into ``warn`` (still 200). The default timeout, 0.8 s, fits Kubernetes'
    default probe timeout of 1 s.
    """

    def __init__(
        self,
        *,
        name: str,
        measurement: str = "responseTime",
        component_type: str = "component",
        critical: bool = True,
        timeout: float = 0.8,
    ) -> None:
        if not name or ":" in name:
            raise ValueError(f"a check name must be non-empty without ':', not {name!r}")
        if not timeout > 0 or math.isinf(timeout):
            raise ValueError(f"a check timeout must be a positive number of seconds: {timeout!r}")
        self.name = name
        self.measurement = measurement
        self.component_type = component_type
        self.critical = critical
        self.timeout = float(timeout)

    @property
    def key(self) -> str:
        """The IETF ``checks`` key, ``name:measurement``."""
        return f"{self.name}:{self.measurement}" if self.measurement else self.name

    async def run(self) -> CheckResult:
        """Probe the dependency once. Raising counts as a failure."""
        raise NotImplementedError

    def __repr__(self) -> str:
        kind = "critical" if self.critical else "non-critical"
        return f"<{type(self).__name__} {self.key} {kind} timeout={self.timeout:g}s>"


class _ProbeCheck(Check):
    """A check whose probe returns ``None`` on success; the result then carries its timing."""

    def __init__(self, probe: Callable[[], Awaitable[CheckResult | None]], **options: Any) -> None:
        super().__init__(**options)
        self._probe = probe

    async def run(self) -> CheckResult:
        start = time.perf_counter()
        result = await self._probe()
        if result is not None:
            return result
        return CheckResult("pass", _ms(time.perf_counter() - start), "ms")


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)


class _CheckError(Exception):
    """A failure whose message launchguard wrote itself, so it is safe to show."""


class _Threaded(Generic[_T]):
    """Runs blocking work in a daemon thread, one at a time per check.

    A probe stuck on a dependency that never answers keeps its thread; later evaluations wait
    on that same run instead of piling up threads (or connections) behind it. Daemon threads,
    not an executor, so a stuck probe never holds up interpreter or event-loop shutdown.
    """

    def __init__(self, fn: Callable[[], _T], name: str) -> None:
        self._fn = fn
        self._name = f"launchguard-health-{name}"
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[_T] | None = None

    async def __call__(self) -> _T:
        with self._lock:
            future = self._future
            if future is None or future.done():
                future = concurrent.futures.Future()
                # Running: a timed-out waiter's cancel() cannot cancel the shared run.
                future.set_running_or_notify_cancel()
                thread = threading.Thread(
                    target=self._work, args=(future,), name=self._name, daemon=True
                )
                thread.start()
                self._future = future
        return await asyncio.wrap_future(future)

    def _work(self, future: concurrent.futures.Future[_T]) -> None:
        try:
            result = self._fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


# --- sanitizing -------------------------------------------------------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|sslpassword|secret|token|api[_-]?key|auth|authorization)"
    r"\s*[=:]\s*(\"[^\"]*\"|'[^']*'|\S+)"
)
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_DSN_PART = re.compile(r"(?i)\b(host|hostaddr|port|dbname|database|user|username)\s*=\s*\S+")


def _scrub(text: str) -> str:
    """``text`` without URLs, DSN fragments or ``password=...`` pairs, and not too long."""
    text = _URL.sub("[redacted]", text)
    text = _CREDENTIALS.sub(r"\1 [redacted]", text)
    text = _SECRET.sub(r"\1=[redacted]", text)
    text = _DSN_PART.sub(r"\1=[redacted]", text)
    return text if len(text) <= _MAX_OUTPUT else text[: _MAX_OUTPUT - 3] + "..."


_REASONS = (
    ("password authentication failed", "authentication failed"),
    ("no password supplied", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ("noauth", "authentication failed"),
    ("invalid password", "authentication failed"),
    ("refused", "connection refused"),
    ("timeout", "timed out"),
    ("timed out", "timed out"),
    ("too many", "too many connections"),
    ("does not exist", "database or role does not exist"),
    ("name or service not known", "host name lookup failed"),
    ("nodename nor servname", "host name lookup failed"),
    ("could not translate host name", "host name lookup failed"),
    ("temporary failure in name resolution", "host name lookup failed"),
    ("certificate", "TLS error"),
    ("ssl", "TLS error"),
    ("reset", "connection reset"),
    ("closed", "connection closed"),
    ("eof", "connection closed"),
    ("shutting down", "server shutting down"),
    ("starting up", "server starting up"),
    ("recovery", "server in recovery"),
)


def _describe(exc: BaseException) -> str:
    """The exception class and a generic reason; never the message, which may hold a DSN."""
    name = type(exc).__name__
    if isinstance(exc, _CheckError):
        return _scrub(str(exc))
    chain = _chain(exc)
    if any(isinstance(e, (asyncio.TimeoutError, TimeoutError)) for e in chain):
        return f"{name}: timed out"
    if any(
        isinstance(e, ConnectionRefusedError)
        or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
        for e in chain
    ):
        return f"{name}: connection refused"
    text = " ".join(str(e) for e in chain).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return f"{name}: {reason}"
    if any(isinstance(e, ConnectionError) for e in chain):
        return f"{name}: connection failed"
    if isinstance(exc, OSError):
        return f"{name}: I/O error"
    return f"{name}: check failed"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, nearest first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# --- built-in checks --------------------------------------------------------------------------


def sqlalchemy_check(
    engine: Engine | AsyncEngine,
    *,
    name: str = "database",
    critical: bool = True,
    timeout: float = 0.8,
) -> Check:
    """``SELECT 1`` through ``engine``'s pool; a sync ``Engine`` or an ``AsyncEngine``.

    The connection always goes back to the pool: a sync probe that times out finishes in its
    thread and returns it there; an async one is cancelled and SQLAlchemy closes it.
    """
    try:
        from sqlalchemy import text
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise MissingExtraError("sqlalchemy", "sqlalchemy") from exc
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:  # no greenlet: no AsyncEngine can exist either
        AsyncEngine = None  # type: ignore[assignment,misc]
    statement = text("SELECT 1")
    options: dict[str, Any] = {
        "name": name,
        "component_type": "datastore",
        "critical": critical,
        "timeout": timeout,
    }

    if AsyncEngine is not None and isinstance(engine, AsyncEngine):
        async_engine = engine

        async def probe_async() -> None:
            async with async_engine.connect() as conn:
                await conn.execute(statement)

        return _ProbeCheck(probe_async, **options)

    sync_engine: Engine = engine  # type: ignore[assignment]

    def select_one() -> None:
        with sync_engine.connect() as conn:
            conn.execute(statement)

    threaded = _Threaded(select_one, name)

    async def probe_sync() -> None:
        await threaded()

    return _ProbeCheck(probe_sync, **options)


def django_check(alias: str = "default", *, critical: bool = True, timeout: float = 0.8) -> Check:
    """``SELECT 1`` on ``django.db.connections[alias]``, from a worker thread of its own.

    The check is named ``database`` for the default alias, else after the alias.

    Django's connections are per thread: the probe opens the thread's connection, drops it
    first if it is unusable or past ``CONN_MAX_AGE``, and closes it when done, so neither a
    stale connection (a false failure) nor a leaked one (the pool of the server) is left over.
    """
    try:
        from django.db import connections
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise MissingExtraError("django", "django") from exc

    def select_one() -> None:
        connection = connections[alias]
        try:
            connection.close_if_unusable_or_obsolete()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        finally:
            connection.close()

    threaded = _Threaded(select_one, f"django-{alias}")

    async def probe() -> None:
        await threaded()

    name = "database" if alias == "default" else alias
    return _ProbeCheck(
        probe, name=name, component_type="datastore", critical=critical, timeout=timeout
    )


def postgres_check(
    dsn: str, *, name: str = "postgres", critical: bool = True, timeout: float = 0.8
) -> Check:
    """Connect, ``SELECT 1``, close: psycopg 3 if installed, else asyncpg (URL DSNs only).

    The connect timeout is bounded by ``timeout`` (libpq rounds it up to 2 s; the check's own
    timeout still cuts the probe at ``timeout``).
    """
    connect_timeout = max(1, math.ceil(timeout))
    try:
        import psycopg
    except ImportError:
        psycopg = None  # type: ignore[assignment]
    options: dict[str, Any] = {
        "name": name,
        "component_type": "datastore",
        "critical": critical,
        "timeout": timeout,
    }

    if psycopg is not None:
        driver = psycopg

        async def probe_psycopg() -> None:
            conn = await driver.AsyncConnection.connect(
                dsn, connect_timeout=connect_timeout, autocommit=True
            )
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()

        return _ProbeCheck(probe_psycopg, **options)

    try:
        import asyncpg  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise MissingExtraError("psycopg", "postgres") from exc

    async def probe_asyncpg() -> None:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=connect_timeout)

    return _ProbeCheck(probe_asyncpg, **options)


def redis_check(
    url_or_client: Any,
    *,
    name: str = "redis",
    critical: bool = True,
    timeout: float = 0.5,
) -> Check:
    """``PING`` a Redis server: a URL (``redis://...``), or a redis-py client (async or sync).

    From a URL each probe opens one connection and closes it; a client given is used as is.
    """
    try:
        # Untyped on purpose: the types-redis stubs lag behind redis-py (no aclose()).
        redis: Any = importlib.import_module("redis")
        aioredis: Any = importlib.import_module("redis.asyncio")
    except ImportError as exc:  # pragma: no cover - exercised without the extra only
        raise MissingExtraError("redis", "redis") from exc
    options: dict[str, Any] = {
        "name": name,
        "component_type": "datastore",
        "critical": critical,
        "timeout": timeout,
    }

    if isinstance(url_or_client, str):
        url = url_or_client

        async def probe_url() -> None:
            client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            try:
                await client.ping()
            finally:
                await client.aclose()

        return _ProbeCheck(probe_url, **options)

    if isinstance(url_or_client, aioredis.Redis):
        async_client = url_or_client

        async def probe_async() -> None:
            await async_client.ping()

        return _ProbeCheck(probe_async, **options)

    if isinstance(url_or_client, redis.Redis):
        threaded = _Threaded(url_or_client.ping, name)

        async def probe_sync() -> None:
            await threaded()

        return _ProbeCheck(probe_sync, **options)
    raise TypeError(
        f"redis_check needs a URL or a redis-py client, not {type(url_or_client).__name__}"
    )


def http_check(
    url: str,
    *,
    name: str,
    expected_status: Container[int] = range(200, 400),
    critical: bool = False,
    timeout: float = 0.8,
) -> Check:
    """``GET url`` (httpx if installed, else urllib in a thread); redirects are not followed.

    The URL never appears in the output. Non-critical by default: an outside API being down
    should make the service degraded (``warn``), not pull it from the load balancer.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("http_check needs an http:// or https:// URL")
    try:
        import httpx
    except ImportError:
        httpx = None  # type: ignore[assignment]

    def verdict(status: int, seconds: float) -> CheckResult | None:
        if status in expected_status:
            return CheckResult("pass", _ms(seconds), "ms")
        return CheckResult("fail", _ms(seconds), "ms", output=f"unexpected HTTP status {status}")

    if httpx is not None:
        client_library = httpx

        async def probe_httpx() -> CheckResult | None:
            start = time.perf_counter()
            async with client_library.AsyncClient(timeout=timeout, follow_redirects=False) as c:
                response = await c.get(url)
            return verdict(response.status_code, time.perf_counter() - start)

        return _ProbeCheck(probe_httpx, name=name, critical=critical, timeout=timeout)

    threaded = _Threaded(lambda: _urllib_status(url, timeout), name)

    async def probe_urllib() -> CheckResult | None:
        start = time.perf_counter()
        status = await threaded()
        return verdict(status, time.perf_counter() - start)

    return _ProbeCheck(probe_urllib, name=name, critical=critical, timeout=timeout)


def _urllib_status(url: str, timeout: float) -> int:
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        # The scheme was checked in http_check: http or https only.
        request = urllib.request.Request(url, method="GET")  # noqa: S310
        with opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:  # 4xx, 5xx and unfollowed 3xx
        error.close()
        return int(error.code)


def disk_check(
    path: str = "/",
    *,
    min_free_ratio: float = 0.05,
    name: str = "disk",
    critical: bool = False,
) -> Check:
    """Free space on the file system holding ``path``; fails below ``min_free_ratio``.

    ``observedValue`` is the free ratio (0.42 = 42 % free), measurement ``free``.
    """
    if not 0.0 <= min_free_ratio <= 1.0:
        raise ValueError(f"min_free_ratio must be between 0 and 1, not {min_free_ratio!r}")

    # statvfs on a hung network mount blocks: keep it off the event loop.
    def free_and_total() -> tuple[int, int]:
        usage = shutil.disk_usage(path)
        return usage.free, usage.total

    threaded = _Threaded(free_and_total, name)

    async def probe() -> CheckResult:
        free, total = await threaded()
        ratio = round(free / total, 4) if total else 0.0
        if ratio < min_free_ratio:
            return CheckResult(
                "fail", ratio, "ratio", output=f"free space {ratio:.1%} below {min_free_ratio:.1%}"
            )
        return CheckResult("pass", ratio, "ratio")

    return _ProbeCheck(
        probe, name=name, measurement="free", component_type="system", critical=critical
    )


def custom_check(
    fn: Callable[[], CustomResult | Awaitable[CustomResult]],
    *,
    name: str,
    critical: bool = True,
    timeout: float = 0.8,
    component_type: str = "component",
) -> Check:
    """A check from a callable: sync (run in a thread) or async.

    It returns ``True`` or ``None`` (pass), ``False`` (fail) or a :class:`CheckResult`;
    raising is a failure.
    """
    call_is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )

    async def settle(value: object) -> CheckResult | None:
        if inspect.isawaitable(value):
            value = await value
        if value is None or value is True:
            return None
        if value is False:
            return CheckResult("fail", output="check returned False")
        if isinstance(value, CheckResult):
            return value
        raise _CheckError(f"check returned {type(value).__name__}, not bool or CheckResult")

    if call_is_async:

        async def probe_async() -> CheckResult | None:
            return await settle(fn())

        probe: Callable[[], Awaitable[CheckResult | None]] = probe_async
    else:
        threaded = _Threaded(fn, name)

        async def probe_sync() -> CheckResult | None:
            return await settle(await threaded())

        probe = probe_sync
    return _ProbeCheck(
        probe, name=name, component_type=component_type, critical=critical, timeout=timeout
    )


# --- metrics ----------------------------------------------------------------------------------

_families: weakref.WeakKeyDictionary[CollectorRegistry, _HealthMetrics] = (
    weakref.WeakKeyDictionary()
)
_families_lock = threading.Lock()


class _HealthMetrics:
    """The health families of one registry, shared by every :class:`Health` using it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.status = Gauge(
            STATUS,
            "Last result of a health check: 1 pass, 0.5 warn, 0 fail.",
            ("check",),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.duration = Histogram(
            DURATION,
            "Duration of health checks, timeouts included.",
            ("check",),
            buckets=_BUCKETS,
            registry=registry,
        )
        self._children: dict[str, tuple[Any, Any]] = {}

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None) -> _HealthMetrics:
        registry = REGISTRY if registry is None else registry
        with _families_lock:
            bundle = _families.get(registry)
            if bundle is None:
                bundle = _families[registry] = cls(registry)
            return bundle

    def record(self, check: str, status: str, seconds: float) -> None:
        children = self._children.get(check)
        if children is None:
            children = (self.status.labels(check), self.duration.labels(check))
            self._children[check] = children
        children[0].set(_GAUGE_VALUE[status])
        children[1].observe(seconds)


class _NoCounter:
    def inc(self, component: str) -> None:
        pass


# --- the endpoints ----------------------------------------------------------------------------


@dataclass
class _Report:
    """One evaluation of every check, and its renderings (computed once, served many times)."""

    status: Status
    results: tuple[tuple[Check, CheckResult], ...]
    at: float
    output: str = ""
    bodies: dict[tuple[str, bool], bytes] = field(default_factory=dict)


class _LoopThread:
    """A private event loop in a daemon thread, for the WSGI (thread) callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=_serve_loop, args=(self.loop,), name="launchguard-health-loop", daemon=True
        )
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        self.thread.join(timeout)


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


class Health:
    """Liveness, readiness and startup responses for one service.

    ``details`` decides who sees the per-check ``checks`` object: ``"never"``, ``"always"``, or
    ``"token"`` (a request with ``Authorization: Bearer <token>``, compared in constant time).
    Everyone else sees the overall status only.
    """

    def __init__(
        self,
        *,
        checks: Sequence[Check] = (),
        service: str,
        version: str,
        release: str,
        cache_ttl: float = 2.0,
        details: str = "never",
        token: str = "",
        errors: InternalErrors | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        checks = tuple(checks)
        for check in checks:
            if not isinstance(check, Check):
                raise TypeError(f"checks must be Check objects, not {type(check).__name__}")
        names = [check.name for check in checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique: {', '.join(duplicates)}")
        if details not in _DETAILS:
            raise ValueError(f"details must be one of {_DETAILS}, not {details!r}")
        if details == "token" and not token:
            raise ValueError('details="token" needs a non-empty token')
        if not cache_ttl >= 0:
            raise ValueError(f"cache_ttl must be >= 0 seconds, not {cache_ttl!r}")
        self.checks = checks
        self._identity = {"version": version, "releaseId": release, "serviceId": service}
        self._service = service
        self._cache_ttl = cache_ttl
        self._details = details
        self._token = token.encode()
        self._errors = errors if errors is not None else InternalErrors(_NoCounter())
        self._metrics = _HealthMetrics.for_registry(registry)
        self._clock = clock
        self._wait_sync = max((c.timeout for c in checks), default=0.0) + _SYNC_GRACE
        self._lock = threading.Lock()
        self._cached: _Report | None = None
        self._inflight: dict[asyncio.AbstractEventLoop, asyncio.Task[_Report]] = {}
        self._stragglers: set[asyncio.Task[CheckResult]] = set()
        self._started = False
        self._draining = False
        self._loop_thread: _LoopThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._static: dict[tuple[str, Status, str], bytes] = {}

    # -- state ---------------------------------------------------------------------------------

    def start_draining(self) -> None:
        """From now on readiness fails (503, output ``draining``); liveness is unaffected.

        Call it first thing on shutdown (SIGTERM), before the server stops accepting
        connections, and keep serving for a few seconds so load balancers see the failure and
        stop sending traffic. Draining cannot be undone.
        """
        self._draining = True

    @property
    def draining(self) -> bool:
        """Whether :meth:`start_draining` was called."""
        return self._draining

    def close(self) -> None:
        """Stop the private event loop of the sync variants, if one was started (tests, reloads)."""
        with self._lock:
            loop_thread, self._loop_thread = self._loop_thread, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
        if loop_thread is not None:
            loop_thread.stop()

    # -- async endpoints -----------------------------------------------------------------------

    async def liveness(self, *, method: str, authorization: str) -> HealthResponse:
        """200 ``pass`` while the process can answer; never runs a check."""
        return self._respond_static(method, "liveness", "pass")

    async def readiness(self, *, method: str, authorization: str) -> HealthResponse:
        """200 for pass/warn, 503 for fail or draining; checks shared and cached."""
        return await self._ready(method, authorization, "readiness")

    async def startup(self, *, method: str, authorization: str) -> HealthResponse:
        """``pass`` for good once readiness has passed (or warned) once; until then, readiness."""
        if self._started:
            return self._respond_static(method, "startup", "pass")
        return await self._ready(method, authorization, "startup")

    async def _ready(self, method: str, authorization: str, kind: str) -> HealthResponse:
        if method not in ("GET", "HEAD"):
            return _not_allowed()
        if self._draining:
            return self._respond_static(method, kind, "fail", "draining")
        report = self._fresh()
        if report is None:
            report = await self._report()
        return self._respond(method, authorization, kind, report)

    # -- sync endpoints (WSGI) -----------------------------------------------------------------

    def liveness_sync(self, *, method: str, authorization: str) -> HealthResponse:
        """:meth:`liveness` for WSGI servers."""
        return self._respond_static(method, "liveness", "pass")

    def readiness_sync(self, *, method: str, authorization: str) -> HealthResponse:
        """:meth:`readiness` for WSGI servers: threads share one evaluation and its cache."""
        return self._ready_sync(method, authorization, "readiness")

    def startup_sync(self, *, method: str, authorization: str) -> HealthResponse:
        """:meth:`startup` for WSGI servers."""
        if self._started:
            return self._respond_static(method, "startup", "pass")
        return self._ready_sync(method, authorization, "startup")

    def _ready_sync(self, method: str, authorization: str, kind: str) -> HealthResponse:
        if method not in ("GET", "HEAD"):
            return _not_allowed()
        if self._draining:
            return self._respond_static(method, kind, "fail", "draining")
        report = self._fresh()
        if report is None:
            report = self._report_sync()
        return self._respond(method, authorization, kind, report)

    # -- evaluation ----------------------------------------------------------------------------

    def _fresh(self) -> _Report | None:
        report = self._cached
        if report is not None and self._clock() - report.at < self._cache_ttl:
            return report
        return None

    async def _report(self) -> _Report:
        """The cached report, or the one evaluation in flight on this loop, or a new one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            report = self._fresh()
            if report is not None:
                return report
            task = self._inflight.get(loop)
            if task is None:
                task = loop.create_task(self._evaluate())
                self._inflight[loop] = task
                task.add_done_callback(self._evaluated)
        # A caller that goes away (client disconnect) must not cancel everyone's evaluation.
        return await asyncio.shield(task)

    def _evaluated(self, task: asyncio.Task[_Report]) -> None:
        with self._lock:
            if self._inflight.get(task.get_loop()) is task:
                del self._inflight[task.get_loop()]

    def _report_sync(self) -> _Report:
        loop = self._private_loop()
        future = asyncio.run_coroutine_threadsafe(self._report(), loop)
        try:
            return future.result(timeout=self._wait_sync)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            self._errors.record("health", exc)
            return _Report("fail", (), self._clock(), output="health evaluation timed out")

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
                self._finalizer = weakref.finalize(self, self._loop_thread.stop, 1.0)
                self._finalizer.atexit = False
            return self._loop_thread.loop

    async def _evaluate(self) -> _Report:
        try:
            outcomes = await asyncio.gather(*(self._run(check) for check in self.checks))
            try:
                for check, result, seconds in outcomes:
                    self._metrics.record(check.name, result.status, seconds)
            except Exception as exc:
                self._errors.record("health.metrics", exc)
            results = tuple((check, result) for check, result, _ in outcomes)
            report = _Report(_overall(results), results, self._clock())
        except Exception as exc:
            self._errors.record("health", exc)
            report = _Report("fail", (), self._clock(), output="health evaluation failed")
        with self._lock:
            self._cached = report
            if report.status != "fail":
                self._started = True
        return report

    async def _run(self, check: Check) -> tuple[Check, CheckResult, float]:
        """One check under its timeout; a timeout or an exception is a ``fail`` result."""
        start = time.perf_counter()
        try:
            task = asyncio.ensure_future(check.run())
        except Exception as exc:  # run() is not a coroutine function
            return check, CheckResult("fail", output=_describe(exc)), time.perf_counter() - start
        try:
            # Shielded: on timeout the check is cancelled in the background, so its cleanup
            # (closing a socket to a server that never answers) cannot stretch the response.
            result = await asyncio.wait_for(asyncio.shield(task), check.timeout)
            if not isinstance(result, CheckResult):
                raise _CheckError(f"run() returned {type(result).__name__}, not CheckResult")
        except asyncio.TimeoutError:
            self._abandon(task)
            result = CheckResult(
                "fail", output=f"TimeoutError: no answer within {check.timeout:g} s"
            )
        except asyncio.CancelledError:
            if not task.done():  # the evaluation itself is being cancelled
                self._abandon(task)
                raise
            # The check cancelled itself: a failure like any other, not everyone's cancellation.
            result = CheckResult("fail", output="CancelledError: check cancelled")
        except Exception as exc:
            result = CheckResult("fail", output=_describe(exc))
        return check, result, time.perf_counter() - start

    def _abandon(self, task: asyncio.Task[CheckResult]) -> None:
        task.cancel()
        self._stragglers.add(task)
        task.add_done_callback(self._straggler_done)

    def _straggler_done(self, task: asyncio.Task[CheckResult]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" noise

    # -- rendering -----------------------------------------------------------------------------

    def _show_details(self, authorization: str) -> bool:
        if self._details == "always":
            return True
        if self._details == "never":
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            # Still compare, so a wrong scheme costs the same time as a wrong token.
            hmac.compare_digest(self._token, self._token)
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), self._token)

    def _respond(
        self, method: str, authorization: str, kind: str, report: _Report
    ) -> HealthResponse:
        try:
            details = bool(report.results) and self._show_details(authorization)
            body = report.bodies.get((kind, details))
            if body is None:
                body = self._render(kind, report.status, report.output, report, details)
                report.bodies[(kind, details)] = body
        except Exception as exc:
            self._errors.record("health", exc)
            return self._respond_static(method, kind, "fail", "health response failed")
        return _response(method, 503 if report.status == "fail" else 200, body)

    def _respond_static(
        self, method: str, kind: str, status: Status, output: str = ""
    ) -> HealthResponse:
        if method not in ("GET", "HEAD"):
            return _not_allowed()
        body = self._static.get((kind, status, output))
        if body is None:
            body = self._static[(kind, status, output)] = self._render(kind, status, output)
        return _response(method, 503 if status == "fail" else 200, body)

    def _render(
        self,
        kind: str,
        status: Status,
        output: str,
        report: _Report | None = None,
        details: bool = False,
    ) -> bytes:
        document: dict[str, Any] = {"status": status, **self._identity}
        document["description"] = f"{self._service} {kind}"
        if output:
            document["output"] = output
        if report is not None and details:
            document["checks"] = {
                check.key: [_check_entry(check, result)] for check, result in report.results
            }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _check_entry(check: Check, result: CheckResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"componentType": check.component_type}
    value = result.observed_value
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    if value is not None:
        entry["observedValue"] = value
    if result.observed_unit:
        entry["observedUnit"] = result.observed_unit
    entry["status"] = result.status
    entry["time"] = result.time
    if result.status != "pass" and result.output:
        entry["output"] = _scrub(result.output)
    return entry


def _overall(results: tuple[tuple[Check, CheckResult], ...]) -> Status:
    status: Status = "pass"
    for check, result in results:
        if result.status == "fail" and check.critical:
            return "fail"
        if result.status != "pass":
            status = "warn"
    return status


def _response(method: str, status: int, body: bytes) -> HealthResponse:
    headers = [
        ("Content-Type", CONTENT_TYPE),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
    ]
    return status, headers, b"" if method == "HEAD" else body


def _not_allowed() -> HealthResponse:
    return (
        405,
        [("Allow", "GET, HEAD"), ("Cache-Control", "no-store"), ("Content-Length", "0")],
        b"",
    )
