"""Health endpoints against real PostgreSQL and Redis: format, timeouts, single flight, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry

from launchguard import _internal
from launchguard._extras import MissingExtraError
from launchguard._internal import InternalErrors
from launchguard.health import (
    CONTENT_TYPE,
    DURATION,
    STATUS,
    Check,
    CheckResult,
    Health,
    HealthResponse,
    custom_check,
    disk_check,
    django_check,
    http_check,
    postgres_check,
    redis_check,
    sqlalchemy_check,
)

from .helpers import PG_DSN, free_port, require_service, scrape, value, wait_for

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("LAUNCHGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
PASSWORD = "hunter2-Sup3rSecret"
TOKEN = "health-details-token"
_F = TypeVar("_F", bound=Callable[..., Any])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def postgres_up() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)


@pytest.fixture
def redis_up() -> None:
    require_service("Redis", "127.0.0.1", 6379)


def requires_postgres(test: _F) -> _F:
    """Needs PostgreSQL on 127.0.0.1:5432: skipped without it, failed without it when CI=true."""
    return pytest.mark.postgres(pytest.mark.usefixtures("postgres_up")(test))  # type: ignore[no-any-return]


def requires_redis(test: _F) -> _F:
    """Needs Redis on 127.0.0.1:6379: skipped without it, failed without it when CI=true."""
    return pytest.mark.redis(pytest.mark.usefixtures("redis_up")(test))  # type: ignore[no-any-return]


# --- helpers ----------------------------------------------------------------------------------


class HungServer:
    """A TCP server on 127.0.0.1 that accepts connections and never writes a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the timeout, to look at the stop flag
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connections are refused."""
    return free_port()


@pytest.fixture
def make_health(registry: CollectorRegistry) -> Iterator[Callable[..., Health]]:
    """Builds Health objects on the test's registry and closes them (their sync loops) after."""
    made: list[Health] = []

    def make(*checks: Check, **options: Any) -> Health:
        options.setdefault("service", "portal")
        options.setdefault("version", "1.4.2")
        options.setdefault("release", "2026.11.28")
        options.setdefault("registry", registry)
        health = Health(checks=checks, **options)
        made.append(health)
        return health

    yield make
    for health in made:
        health.close()


class Counter:
    """A check function that counts its runs, optionally sleeping (sync or async)."""

    def __init__(self, result: Any = True, sleep: float = 0.0) -> None:
        self.runs = 0
        self.result = result
        self.sleep = sleep
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.runs += 1
        time.sleep(self.sleep)
        return self.result

    async def run_async(self) -> Any:
        self.runs += 1
        await asyncio.sleep(self.sleep)
        return self.result


class FrozenClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(response: HealthResponse) -> dict[str, Any]:
    return json.loads(response[2])  # type: ignore[no-any-return]


def headers(response: HealthResponse) -> dict[str, str]:
    return dict(response[1])


def pg_sessions(application_name: str) -> int:
    """Sessions of ``application_name`` on the server, counted from a separate connection."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def tagged_dsn(tag: str) -> str:
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}application_name={tag}"


def assert_no_secret(response: HealthResponse, *secrets: str) -> None:
    text = response[2].decode()
    for secret in (PASSWORD, "postgresql://", "redis://", "http://", *secrets):
        assert secret not in text


async def ready(health: Health, authorization: str = "") -> HealthResponse:
    return await health.readiness(method="GET", authorization=authorization)


async def timed_ready(health: Health) -> tuple[HealthResponse, float]:
    start = time.perf_counter()
    response = await ready(health)
    return response, time.perf_counter() - start


def only_check(response: HealthResponse) -> dict[str, Any]:
    (entries,) = body(response)["checks"].values()
    (entry,) = entries
    return entry  # type: ignore[no-any-return]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/") or "200")
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/200")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local HTTP server answering ``GET /<status>`` with that status."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


# --- the response format ----------------------------------------------------------------------


class TestFormat:
    async def test_liveness_document(self, make_health: Callable[..., Health]) -> None:
        """Liveness answers 200 in application/health+json with the service identity."""
        response = await make_health().liveness(method="GET", authorization="")
        assert response[0] == 200
        assert headers(response)["Content-Type"] == CONTENT_TYPE
        assert headers(response)["Cache-Control"] == "no-store"
        assert headers(response)["Content-Length"] == str(len(response[2]))
        assert body(response) == {
            "status": "pass",
            "version": "1.4.2",
            "releaseId": "2026.11.28",
            "serviceId": "portal",
            "description": "portal liveness",
        }

    async def test_body_starts_with_the_overall_status(
        self, make_health: Callable[..., Health]
    ) -> None:
        """The body starts with {"status":"pass" (the uptime-monitor keyword), compact JSON."""
        health = make_health(custom_check(lambda: True, name="ok"), details="always")
        assert (await ready(health))[2].startswith(b'{"status":"pass",')

    async def test_check_entries(self, make_health: Callable[..., Health]) -> None:
        """Checks are keyed name:measurement, one entry each, output only when not passing."""
        health = make_health(
            custom_check(lambda: True, name="ok"),
            custom_check(lambda: False, name="flaky", critical=False),
            disk_check(min_free_ratio=0.0),
            details="always",
        )
        checks = body(await ready(health))["checks"]
        assert list(checks) == ["ok:responseTime", "flaky:responseTime", "disk:free"]
        ok, flaky, disk = (entries[0] for entries in checks.values())
        assert ok["componentType"] == "component"
        assert ok["status"] == "pass"
        assert ok["observedUnit"] == "ms"
        assert isinstance(ok["observedValue"], float)
        assert "output" not in ok
        assert ok["time"].endswith("Z")
        assert flaky == {
            "componentType": "component",
            "status": "fail",
            "time": flaky["time"],
            "output": "check returned False",
        }
        assert disk["componentType"] == "system"
        assert disk["observedUnit"] == "ratio"
        assert 0.0 < disk["observedValue"] <= 1.0

    @pytest.mark.parametrize("endpoint", ["liveness", "readiness", "startup"])
    async def test_head(self, make_health: Callable[..., Health], endpoint: str) -> None:
        """HEAD answers the status and headers of GET with an empty body."""
        health = make_health(custom_check(lambda: False, name="db"))
        get = await getattr(health, endpoint)(method="GET", authorization="")
        head = await getattr(health, endpoint)(method="HEAD", authorization="")
        assert head[0] == get[0]
        assert head[1] == get[1]
        assert head[2] == b""

    @pytest.mark.parametrize("endpoint", ["liveness", "readiness", "startup"])
    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
    async def test_other_methods(
        self, make_health: Callable[..., Health], endpoint: str, method: str
    ) -> None:
        """Methods other than GET and HEAD get 405 with Allow, and run no check."""
        counter = Counter()
        health = make_health(custom_check(counter, name="db"))
        response = await getattr(health, endpoint)(method=method, authorization="")
        assert response[0] == 405
        assert headers(response)["Allow"] == "GET, HEAD"
        assert getattr(health, endpoint + "_sync")(method=method, authorization="")[0] == 405
        assert counter.runs == 0


# --- PostgreSQL -------------------------------------------------------------------------------


class TestPostgres:
    @requires_postgres
    async def test_pass(self, make_health: Callable[..., Health]) -> None:
        """A reachable PostgreSQL passes through psycopg: 200, observed response time."""
        response = await ready(make_health(postgres_check(PG_DSN), details="always"))
        assert response[0] == 200
        entry = body(response)["checks"]["postgres:responseTime"][0]
        assert entry["status"] == "pass"
        assert entry["componentType"] == "datastore"
        assert entry["observedValue"] > 0

    @requires_postgres
    async def test_asyncpg_fallback(
        self, make_health: Callable[..., Health], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without psycopg the check connects with asyncpg."""
        monkeypatch.setitem(sys.modules, "psycopg", None)
        response = await ready(make_health(postgres_check(PG_DSN)))
        assert response[0] == 200

    async def test_closed_port(self, make_health: Callable[..., Health], closed_port: int) -> None:
        """Refused connections fail readiness with 503 at once, the DSN nowhere in the body."""
        dsn = f"postgresql://portal:{PASSWORD}@127.0.0.1:{closed_port}/portal"
        response, elapsed = await timed_ready(make_health(postgres_check(dsn), details="always"))
        assert response[0] == 503
        assert body(response)["status"] == "fail"
        assert only_check(response)["output"] == "OperationalError: connection refused"
        assert_no_secret(response, str(closed_port))
        assert elapsed < 0.5

    async def test_closed_port_asyncpg(
        self,
        make_health: Callable[..., Health],
        closed_port: int,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The asyncpg path fails just as fast, and as discreetly."""
        monkeypatch.setitem(sys.modules, "psycopg", None)
        dsn = f"postgresql://portal:{PASSWORD}@127.0.0.1:{closed_port}/portal"
        response, elapsed = await timed_ready(make_health(postgres_check(dsn), details="always"))
        assert response[0] == 503
        assert only_check(response)["output"] == "ConnectionRefusedError: connection refused"
        assert_no_secret(response, str(closed_port))
        assert elapsed < 0.5

    @pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
    async def test_never_answers(
        self,
        make_health: Callable[..., Health],
        hung: HungServer,
        monkeypatch: pytest.MonkeyPatch,
        driver: str,
    ) -> None:
        """A server that accepts and never answers fails within the check's timeout."""
        if driver == "asyncpg":
            monkeypatch.setitem(sys.modules, "psycopg", None)
        dsn = f"postgresql://portal:{PASSWORD}@127.0.0.1:{hung.port}/portal"
        health = make_health(postgres_check(dsn, timeout=0.4), details="always")
        response, elapsed = await timed_ready(health)
        assert response[0] == 503
        assert only_check(response)["output"] == "TimeoutError: no answer within 0.4 s"
        assert elapsed < 0.4 + 0.5
        assert_no_secret(response)


class TestSQLAlchemy:
    @requires_postgres
    async def test_sync_engine(self, make_health: Callable[..., Health]) -> None:
        """A sync Engine passes, and its connection goes back to the pool."""
        from sqlalchemy import create_engine

        engine = create_engine(PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            response = await ready(make_health(sqlalchemy_check(engine), details="always"))
            assert response[0] == 200
            assert "database:responseTime" in body(response)["checks"]
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            engine.dispose()

    @requires_postgres
    async def test_async_engine(self, make_health: Callable[..., Health]) -> None:
        """An AsyncEngine passes on the caller's event loop."""
        pytest.importorskip("greenlet", reason="SQLAlchemy's asyncio support needs greenlet")
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
        try:
            assert (await ready(make_health(sqlalchemy_check(engine))))[0] == 200
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    @requires_postgres
    async def test_sync_timeout_leaks_no_connection(
        self, make_health: Callable[..., Health]
    ) -> None:
        """A probe that times out waiting for the pool returns its connection once it gets one."""
        from sqlalchemy import create_engine

        tag = f"lg-sa-{uuid.uuid4().hex[:8]}"
        engine = create_engine(
            tagged_dsn(tag).replace("postgresql://", "postgresql+psycopg://", 1),
            pool_size=1,
            max_overflow=0,
        )
        health = make_health(sqlalchemy_check(engine, timeout=0.3), cache_ttl=0)
        try:
            held = engine.connect()  # the pool's only connection, busy elsewhere
            response, elapsed = await timed_ready(health)
            assert response[0] == 503
            assert elapsed < 0.3 + 0.5
            held.close()
            wait_for(lambda: engine.pool.checkedout() == 0)  # type: ignore[attr-defined]
            assert (await ready(health))[0] == 200
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            assert pg_sessions(tag) == 1  # the pooled one, nothing more
        finally:
            engine.dispose()
        wait_for(lambda: pg_sessions(tag) == 0)

    @requires_postgres
    async def test_async_timeout_leaks_no_connection(
        self, make_health: Callable[..., Health]
    ) -> None:
        """An AsyncEngine probe cancelled on timeout leaves the pool intact."""
        pytest.importorskip("greenlet", reason="SQLAlchemy's asyncio support needs greenlet")
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(
            PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1),
            pool_size=1,
            max_overflow=0,
        )
        health = make_health(sqlalchemy_check(engine, timeout=0.3), cache_ttl=0)
        try:
            held = await engine.connect()
            response, elapsed = await timed_ready(health)
            assert response[0] == 503
            assert elapsed < 0.3 + 0.5
            await held.close()
            await asyncio.sleep(0.05)  # the cancelled probe finishes in the background
            assert (await ready(health))[0] == 200
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    async def test_never_answers(
        self, make_health: Callable[..., Health], hung: HungServer
    ) -> None:
        """A sync Engine on a server that never answers fails in time, and frees its thread."""
        from sqlalchemy import create_engine

        engine = create_engine(
            f"postgresql+psycopg://portal:{PASSWORD}@127.0.0.1:{hung.port}/portal"
        )
        health = make_health(sqlalchemy_check(engine, timeout=0.4), details="always")
        response, elapsed = await timed_ready(health)
        assert response[0] == 503
        assert elapsed < 0.4 + 0.5
        assert_no_secret(response)
        hung.close()  # the stuck probe gets EOF and gives up
        wait_for(lambda: engine.pool.checkedout() == 0)  # type: ignore[attr-defined]
        engine.dispose()

    async def test_closed_port(self, make_health: Callable[..., Health], closed_port: int) -> None:
        """A refused connection fails quickly without the URL or password in the output."""
        from sqlalchemy import create_engine

        engine = create_engine(
            f"postgresql+psycopg://portal:{PASSWORD}@127.0.0.1:{closed_port}/portal"
        )
        response, elapsed = await timed_ready(
            make_health(sqlalchemy_check(engine), details="always")
        )
        assert response[0] == 503
        assert only_check(response)["output"] == "OperationalError: connection refused"
        assert_no_secret(response, str(closed_port))
        assert elapsed < 0.5
        engine.dispose()


_DJANGO_SCRIPT = """
import asyncio, json, sys, threading, time
import django, psycopg
from django.conf import settings

pg_dsn, tag, closed_port, password = sys.argv[1:5]
params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
settings.configure(
    USE_TZ=True,
    INSTALLED_APPS=[],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params.get("dbname", "test"),
            "USER": params.get("user", "postgres"),
            "HOST": params.get("host", "127.0.0.1"),
            "PORT": params.get("port", "5432"),
            "OPTIONS": {"application_name": tag},
        },
        "reports": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "reports",
            "USER": "portal",
            "PASSWORD": password,
            "HOST": "127.0.0.1",
            "PORT": closed_port,
        },
    },
)
django.setup()
from django.db import connections
from prometheus_client import CollectorRegistry
from launchguard.health import Health, django_check

def sessions():
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (tag,)
        ).fetchone()[0]

out = {"before": sessions()}
health = Health(
    checks=[django_check(), django_check("reports", critical=False)],
    service="portal", version="1", release="r", details="always", cache_ttl=0,
    registry=CollectorRegistry(),
)

# A persistent connection of the main thread, killed by the server: it must not fail the probe.
with connections["default"].cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
with psycopg.connect(pg_dsn, autocommit=True) as admin:
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
time.sleep(0.2)

async def main():
    return [await health.readiness(method="GET", authorization="") for _ in range(20)]

responses = asyncio.run(main())
kwargs = {"method": "GET", "authorization": ""}
threads = [threading.Thread(target=health.readiness_sync, kwargs=kwargs) for _ in range(20)]
for t in threads: t.start()
for t in threads: t.join()
out["statuses"] = sorted({r[0] for r in responses})
out["body"] = json.loads(responses[-1][2])
connections["default"].close()
health.close()
deadline = time.monotonic() + 5
while sessions() != out["before"] and time.monotonic() < deadline:
    time.sleep(0.05)
out["after"] = sessions()
print(json.dumps(out))
"""


class TestDjango:
    @requires_postgres
    @pytest.mark.slow
    def test_threads_stale_and_secrets(self, closed_port: int) -> None:
        """Django: stale connections, worker threads and a down alias, run in a fresh process."""
        tag = f"lg-dj-{uuid.uuid4().hex[:8]}"
        src = Path(__file__).resolve().parents[1] / "src"
        env = {**os.environ, "PYTHONPATH": str(src)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        run = subprocess.run(
            [sys.executable, "-W", "error", "-c", textwrap.dedent(_DJANGO_SCRIPT),
             PG_DSN, tag, str(closed_port), PASSWORD],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["statuses"] == [200]  # the stale main-thread connection did not matter
        database = out["body"]["checks"]["database:responseTime"][0]
        reports = out["body"]["checks"]["reports:responseTime"][0]
        assert out["body"]["status"] == "warn"
        assert database["status"] == "pass"
        assert reports["status"] == "fail"
        assert reports["output"] == "OperationalError: connection refused"
        assert PASSWORD not in run.stdout
        assert out["after"] == out["before"]  # 40 probes from worker threads, none left open


# --- Redis ------------------------------------------------------------------------------------


class TestRedis:
    @requires_redis
    async def test_pass_url(self, make_health: Callable[..., Health]) -> None:
        """PING through redis.asyncio from a URL passes."""
        response = await ready(make_health(redis_check(REDIS_URL), details="always"))
        assert response[0] == 200
        assert body(response)["checks"]["redis:responseTime"][0]["status"] == "pass"

    @requires_redis
    async def test_pass_clients(self, make_health: Callable[..., Health]) -> None:
        """An async client and a sync client given to the check both pass."""
        import redis
        import redis.asyncio

        async_client: Any = redis.asyncio.Redis.from_url(REDIS_URL)  # stubs lack aclose()
        sync_client = redis.Redis.from_url(REDIS_URL)
        try:
            health = make_health(
                redis_check(async_client, name="cache"), redis_check(sync_client, name="queue")
            )
            assert (await ready(health))[0] == 200
        finally:
            await async_client.aclose()
            sync_client.close()

    async def test_closed_port(self, make_health: Callable[..., Health], closed_port: int) -> None:
        """A refused Redis fails readiness at once, the URL and password hidden."""
        url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port}/0"
        response, elapsed = await timed_ready(make_health(redis_check(url), details="always"))
        assert response[0] == 503
        assert only_check(response)["output"] == "ConnectionError: connection refused"
        assert_no_secret(response, str(closed_port))
        assert elapsed < 0.5

    async def test_never_answers(
        self, make_health: Callable[..., Health], hung: HungServer
    ) -> None:
        """A Redis that accepts and never answers fails within the timeout."""
        url = f"redis://:{PASSWORD}@127.0.0.1:{hung.port}/0"
        response, elapsed = await timed_ready(make_health(redis_check(url), details="always"))
        assert response[0] == 503
        assert only_check(response)["status"] == "fail"
        assert elapsed < 0.5 + 0.5
        assert_no_secret(response)


# --- HTTP, disk, custom -----------------------------------------------------------------------


class TestHttp:
    @pytest.mark.parametrize("library", ["httpx", "urllib"])
    async def test_statuses(
        self,
        make_health: Callable[..., Health],
        http_server: str,
        monkeypatch: pytest.MonkeyPatch,
        library: str,
    ) -> None:
        """2xx and 3xx (not followed) pass; a 500 fails the check, which only warns."""
        if library == "urllib":
            monkeypatch.setitem(sys.modules, "httpx", None)
        health = make_health(
            http_check(f"{http_server}/204", name="ok"),
            http_check(f"{http_server}/302", name="moved"),
            http_check(f"{http_server}/500", name="payments-api"),
            details="always",
        )
        response = await ready(health)
        assert response[0] == 200
        checks = body(response)["checks"]
        assert checks["ok:responseTime"][0]["status"] == "pass"
        assert checks["moved:responseTime"][0]["status"] == "pass"
        assert checks["payments-api:responseTime"][0]["output"] == "unexpected HTTP status 500"
        assert body(response)["status"] == "warn"

    async def test_expected_status(
        self, make_health: Callable[..., Health], http_server: str
    ) -> None:
        """expected_status narrows what counts as up."""
        check = http_check(f"{http_server}/302", name="api", expected_status={200}, critical=True)
        assert (await ready(make_health(check)))[0] == 503

    @pytest.mark.parametrize("library", ["httpx", "urllib"])
    async def test_never_answers(
        self,
        make_health: Callable[..., Health],
        hung: HungServer,
        monkeypatch: pytest.MonkeyPatch,
        library: str,
    ) -> None:
        """An API that never answers warns within the timeout; the URL stays hidden."""
        if library == "urllib":
            monkeypatch.setitem(sys.modules, "httpx", None)
        url = f"http://user:{PASSWORD}@127.0.0.1:{hung.port}/ping"
        health = make_health(http_check(url, name="payments-api", timeout=0.3), details="always")
        response, elapsed = await timed_ready(health)
        assert response[0] == 200
        assert body(response)["status"] == "warn"
        assert elapsed < 0.3 + 0.5
        assert_no_secret(response)

    def test_only_http_urls(self) -> None:
        """Other schemes are refused when the check is built."""
        with pytest.raises(ValueError, match="http"):
            http_check("file:///etc/passwd", name="x")


class TestDisk:
    async def test_low_space_warns(self, make_health: Callable[..., Health]) -> None:
        """Below min_free_ratio the disk check fails; non-critical, so the service warns."""
        health = make_health(disk_check("/", min_free_ratio=1.0), details="always")
        response = await ready(health)
        assert response[0] == 200
        assert body(response)["status"] == "warn"
        assert only_check(response)["output"].startswith("free space ")

    def test_ratio_validated(self) -> None:
        """A ratio outside [0, 1] is refused."""
        with pytest.raises(ValueError, match="min_free_ratio"):
            disk_check(min_free_ratio=5)


class TestCustom:
    @pytest.mark.parametrize(
        ("result", "status"),
        [
            (True, "pass"),
            (None, "pass"),
            (False, "fail"),
            (CheckResult("warn", 0.91, "ratio", output="queue 91% full"), "warn"),
            ("yes", "fail"),
        ],
    )
    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_results(
        self, make_health: Callable[..., Health], result: Any, status: str, kind: str
    ) -> None:
        """Sync and async callables: True/None pass, False fails, a CheckResult is taken as is."""
        counter = Counter(result)
        fn = counter if kind == "sync" else counter.run_async
        health = make_health(custom_check(fn, name="queue"), details="always")
        response = await ready(health)
        assert only_check(response)["status"] == status
        assert response[0] == (503 if status == "fail" else 200)
        assert counter.runs == 1

    async def test_raising_is_a_failure(self, make_health: Callable[..., Health]) -> None:
        """A raising check fails with its class and a generic reason, not its message."""

        def broken() -> bool:
            raise RuntimeError(f"cannot reach postgresql://app:{PASSWORD}@db.internal/app")

        response = await ready(make_health(custom_check(broken, name="db"), details="always"))
        assert response[0] == 503
        assert only_check(response)["output"] == "RuntimeError: check failed"
        assert_no_secret(response, "db.internal")

    async def test_self_cancelling_check(self, make_health: Callable[..., Health]) -> None:
        """A check that raises CancelledError fails; the caller is not cancelled."""

        async def cancelled() -> bool:
            raise asyncio.CancelledError

        response = await ready(make_health(custom_check(cancelled, name="db"), details="always"))
        assert response[0] == 503
        assert only_check(response)["output"] == "CancelledError: check cancelled"

    async def test_own_output_is_scrubbed(self, make_health: Callable[..., Health]) -> None:
        """Output a check writes itself is scrubbed of URLs and password pairs too."""
        output = (
            f"down: redis://:{PASSWORD}@cache:6379 and host=db password={PASSWORD}"
            " (sent Authorization: Bearer tok123)"
        )
        check = custom_check(lambda: CheckResult("fail", output=output), name="x")
        response = await ready(make_health(check, details="always"))
        assert_no_secret(response, "host=db", "tok123")
        assert only_check(response)["output"].startswith("down: [redacted]")

    async def test_slow_check_times_out(self, make_health: Callable[..., Health]) -> None:
        """A slow async check fails at its timeout and the others still report."""
        slow = Counter(sleep=5.0)
        health = make_health(
            custom_check(slow.run_async, name="slow", timeout=0.2),
            custom_check(lambda: True, name="fast"),
            details="always",
        )
        response, elapsed = await timed_ready(health)
        assert elapsed < 0.2 + 0.5
        checks = body(response)["checks"]
        assert checks["slow:responseTime"][0]["output"] == "TimeoutError: no answer within 0.2 s"
        assert checks["fast:responseTime"][0]["status"] == "pass"


# --- single flight and caching ----------------------------------------------------------------


async def _hammer(health: Health, calls: int = 1000, concurrency: int = 50) -> list[int]:
    limit = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with limit:
            return (await ready(health))[0]

    return await asyncio.gather(*(one() for _ in range(calls)))


class TestSingleFlight:
    async def test_one_evaluation_per_interval(self, make_health: Callable[..., Health]) -> None:
        """1,000 calls, 50 at a time, run the checks once; the next interval runs them again."""
        clock = FrozenClock()
        counter = Counter(sleep=0.05)
        health = make_health(custom_check(counter.run_async, name="db"), clock=clock)
        assert set(await _hammer(health)) == {200}
        assert counter.runs == 1
        clock.now += 1.9
        await _hammer(health)
        assert counter.runs == 1
        clock.now += 0.1
        await _hammer(health)
        assert counter.runs == 2

    async def test_real_clock(self, make_health: Callable[..., Health]) -> None:
        """With the real clock, evaluations never outnumber the cache intervals elapsed."""
        counter = Counter()
        health = make_health(custom_check(counter.run_async, name="db"), cache_ttl=0.1)
        start = time.monotonic()
        for _ in range(10):
            await _hammer(health, calls=100)
            await asyncio.sleep(0.03)
        elapsed = time.monotonic() - start
        assert 1 <= counter.runs <= 1 + elapsed / 0.1

    async def test_no_cache_still_shares(self, make_health: Callable[..., Health]) -> None:
        """With cache_ttl=0, callers arriving during an evaluation still share it."""
        counter = Counter(sleep=0.1)
        health = make_health(custom_check(counter.run_async, name="db"), cache_ttl=0)
        await asyncio.gather(*(ready(health) for _ in range(50)))
        assert counter.runs == 1

    @requires_postgres
    async def test_postgres_connections(self, make_health: Callable[..., Health]) -> None:
        """1,000 calls open one PostgreSQL session in all, and leave none behind."""
        tag = f"lg-sf-{uuid.uuid4().hex[:8]}"
        before = pg_sessions(tag)
        counter = Counter()
        health = make_health(
            postgres_check(tagged_dsn(tag)),
            custom_check(counter.run_async, name="counter"),
            clock=FrozenClock(),
        )
        assert set(await _hammer(health)) == {200}
        assert counter.runs == 1
        wait_for(lambda: pg_sessions(tag) == before)

    @requires_redis
    async def test_redis(self, make_health: Callable[..., Health]) -> None:
        """1,000 calls against Redis evaluate once."""
        counter = Counter()
        health = make_health(
            redis_check(REDIS_URL),
            custom_check(counter.run_async, name="counter"),
            clock=FrozenClock(),
        )
        assert set(await _hammer(health)) == {200}
        assert counter.runs == 1

    def test_sync_threads_share(self, make_health: Callable[..., Health]) -> None:
        """readiness_sync from 20 threads at once runs the checks once."""
        counter = Counter(sleep=0.2)
        health = make_health(custom_check(counter, name="db"), cache_ttl=0)
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def call() -> None:
            barrier.wait()
            statuses.append(health.readiness_sync(method="GET", authorization="")[0])

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert statuses == [200] * 20
        assert counter.runs == 1

    @requires_postgres
    def test_sync_threads_postgres(self, make_health: Callable[..., Health]) -> None:
        """20 WSGI threads at once open one PostgreSQL session, closed afterwards."""
        tag = f"lg-st-{uuid.uuid4().hex[:8]}"
        counter = Counter()
        health = make_health(
            postgres_check(tagged_dsn(tag)), custom_check(counter, name="n"), cache_ttl=0
        )
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def call() -> None:
            barrier.wait()
            statuses.append(health.readiness_sync(method="HEAD", authorization="")[0])

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert statuses == [200] * 20
        assert counter.runs <= 2  # one, unless a straggler arrived after it finished
        wait_for(lambda: pg_sessions(tag) == 0)

    def test_sync_never_answers(self, make_health: Callable[..., Health], hung: HungServer) -> None:
        """The sync variant is bounded by the check timeout too."""
        dsn = f"postgresql://portal:{PASSWORD}@127.0.0.1:{hung.port}/portal"
        health = make_health(postgres_check(dsn, timeout=0.4))
        start = time.perf_counter()
        assert health.readiness_sync(method="GET", authorization="")[0] == 503
        assert time.perf_counter() - start < 0.4 + 0.5


# --- liveness, draining, startup --------------------------------------------------------------


class TestLiveness:
    async def test_up_while_dependencies_down(
        self, make_health: Callable[..., Health], closed_port: int, hung: HungServer
    ) -> None:
        """Liveness stays 200 with every dependency down, and runs none of the checks."""
        counter = Counter(result=False)
        health = make_health(
            postgres_check(f"postgresql://u:{PASSWORD}@127.0.0.1:{closed_port}/x"),
            redis_check(f"redis://127.0.0.1:{hung.port}/0"),
            custom_check(counter, name="everything"),
            details="always",
        )
        assert (await ready(health))[0] == 503
        live = await health.liveness(method="GET", authorization=f"Bearer {TOKEN}")
        assert live[0] == 200
        assert body(live)["status"] == "pass"
        assert "checks" not in body(live)
        assert health.liveness_sync(method="GET", authorization="")[0] == 200
        assert counter.runs == 1  # the readiness call only


class TestDraining:
    async def test_readiness_fails_liveness_passes(
        self, make_health: Callable[..., Health]
    ) -> None:
        """After start_draining readiness answers 503 "draining" without checks; liveness 200."""
        counter = Counter()
        health = make_health(custom_check(counter, name="db"), details="always")
        assert (await ready(health))[0] == 200
        assert not health.draining
        health.start_draining()
        assert health.draining
        response = await ready(health)
        assert response[0] == 503
        assert body(response)["status"] == "fail"
        assert body(response)["output"] == "draining"
        assert "checks" not in body(response)
        assert health.readiness_sync(method="GET", authorization="")[0] == 503
        assert (await health.liveness(method="GET", authorization=""))[0] == 200
        assert health.liveness_sync(method="HEAD", authorization="")[0] == 200
        assert counter.runs == 1


class TestStartup:
    async def test_passes_for_good_once_ready(self, make_health: Callable[..., Health]) -> None:
        """Startup fails until readiness passes once, then passes without running checks."""
        counter = Counter(result=False)
        clock = FrozenClock()
        health = make_health(custom_check(counter, name="migrations"), clock=clock)
        assert (await health.startup(method="GET", authorization=""))[0] == 503
        counter.result = True
        clock.now += 5
        assert (await health.startup(method="GET", authorization=""))[0] == 200
        counter.result = False
        clock.now += 5
        assert (await ready(health))[0] == 503
        runs = counter.runs
        assert (await health.startup(method="GET", authorization=""))[0] == 200
        assert health.startup_sync(method="GET", authorization="")[0] == 200
        assert counter.runs == runs

    def test_sync(self, make_health: Callable[..., Health]) -> None:
        """startup_sync runs the checks until they have passed once, then no more."""
        health = make_health(custom_check(lambda: True, name="db"), details="always")
        response = health.startup_sync(method="GET", authorization="")
        assert response[0] == 200
        assert body(response)["description"] == "portal startup"
        assert "checks" in body(response)
        assert "checks" not in body(health.startup_sync(method="GET", authorization=""))


# --- who sees the details ---------------------------------------------------------------------


class TestDetails:
    @pytest.mark.parametrize(
        ("details", "authorization", "visible"),
        [
            ("never", "", False),
            ("never", f"Bearer {TOKEN}", False),
            ("token", "", False),
            ("token", "Bearer wrong", False),
            ("token", f"Bearer {TOKEN}x", False),
            ("token", f"Basic {TOKEN}", False),
            ("token", TOKEN, False),
            ("token", f"Bearer {TOKEN}", True),
            ("token", f"bearer  {TOKEN} ", True),
            ("always", "", True),
        ],
    )
    async def test_visibility(
        self,
        make_health: Callable[..., Health],
        details: str,
        authorization: str,
        visible: bool,
    ) -> None:
        """Checks are shown only as configured; the overall status is always there."""
        health = make_health(custom_check(lambda: False, name="db"), details=details, token=TOKEN)
        for response in (
            await ready(health, authorization),
            health.readiness_sync(method="GET", authorization=authorization),
        ):
            assert response[0] == 503
            assert body(response)["status"] == "fail"
            assert ("checks" in body(response)) is visible
            assert TOKEN.encode() not in response[2]

    def test_token_required(self) -> None:
        """details="token" without a token is refused at construction."""
        with pytest.raises(ValueError, match="token"):
            Health(service="s", version="1", release="r", details="token")


# --- metrics and internal errors --------------------------------------------------------------


class TestMetrics:
    async def test_status_and_duration(
        self, make_health: Callable[..., Health], registry: CollectorRegistry
    ) -> None:
        """Each check publishes 1/0.5/0 in the status gauge and one duration observation."""
        health = make_health(
            custom_check(lambda: True, name="db"),
            custom_check(lambda: CheckResult("warn"), name="queue"),
            custom_check(lambda: False, name="payments-api", critical=False),
        )
        await ready(health)
        samples = scrape(registry)
        assert value(samples, STATUS, check="db") == 1.0
        assert value(samples, STATUS, check="queue") == 0.5
        assert value(samples, STATUS, check="payments-api") == 0.0
        assert value(samples, DURATION + "_count", check="db") == 1.0

    async def test_two_health_objects_share_families(
        self, make_health: Callable[..., Health], registry: CollectorRegistry
    ) -> None:
        """A second Health on the same registry shares the families: no duplicated timeseries."""
        first = make_health(custom_check(lambda: True, name="db"))
        second = make_health(custom_check(lambda: False, name="db", critical=False))
        await ready(first)
        await ready(second)
        samples = scrape(registry)
        assert value(samples, STATUS, check="db") == 0.0
        assert value(samples, DURATION + "_count", check="db") == 2.0

    def test_duplicate_names_refused(self) -> None:
        """Two checks of one Health may not share a name (it is the metric label)."""
        with pytest.raises(ValueError, match="unique"):
            Health(
                checks=[custom_check(bool, name="db"), custom_check(bool, name="db")],
                service="s",
                version="1",
                release="r",
            )


class _Errors:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def inc(self, component: str) -> None:
        self.counts[component] = self.counts.get(component, 0) + 1


class TestInternalErrors:
    async def test_metrics_failure_is_contained(
        self, make_health: Callable[..., Health], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failing metrics store is counted and logged; readiness still answers."""
        from launchguard import health as module

        def broken(*args: Any) -> None:
            raise RuntimeError("store down")

        monkeypatch.setattr(module._HealthMetrics, "record", broken)
        monkeypatch.setattr(_internal, "RERAISE", False)
        errors = _Errors()
        health = make_health(custom_check(lambda: True, name="db"), errors=InternalErrors(errors))
        assert (await ready(health))[0] == 200
        assert errors.counts == {"health.metrics": 1}

    async def test_reraised_under_tests(
        self, make_health: Callable[..., Health], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under RERAISE the same failure reaches the test."""
        from launchguard import health as module

        def broken(*args: Any) -> None:
            raise RuntimeError("store down")

        monkeypatch.setattr(module._HealthMetrics, "record", broken)
        health = make_health(custom_check(lambda: True, name="db"))
        with pytest.raises(RuntimeError, match="store down"):
            await ready(health)


class TestMissingExtras:
    @pytest.mark.parametrize(
        ("modules", "build", "extra"),
        [
            (("psycopg", "asyncpg"), lambda: postgres_check(PG_DSN), "postgres"),
            (("redis", "redis.asyncio"), lambda: redis_check(REDIS_URL), "redis"),
            (("sqlalchemy",), lambda: sqlalchemy_check(None), "sqlalchemy"),  # type: ignore[arg-type]
            (("django", "django.db"), django_check, "django"),
        ],
    )
    def test_names_the_extra(
        self,
        monkeypatch: pytest.MonkeyPatch,
        modules: tuple[str, ...],
        build: Callable[[], Check],
        extra: str,
    ) -> None:
        """A missing client library raises MissingExtraError naming the extra to install."""
        for module in modules:
            monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(MissingExtraError, match=rf"launchguard\[{extra}\]"):
            build()
