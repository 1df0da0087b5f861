"""Query counting against real databases: SQLite through the example portals, PostgreSQL
through psycopg (sync and async), asyncpg, SQLAlchemy (sync on psycopg, async on asyncpg)."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.queries import QueryLedger, listening

from .helpers import PG_DSN, UvicornThread, require_service, scrape, value

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Ledgers:
    """Every request ledger the middleware closes, from any thread."""

    def __init__(self) -> None:
        self.items: list[QueryLedger] = []

    def __call__(self, ledger: QueryLedger) -> None:
        self.items.append(ledger)

    def by_route(self, route: str) -> list[QueryLedger]:
        return [ledger for ledger in self.items if ledger.route == route]


@pytest.fixture
def ledgers() -> Iterator[Ledgers]:
    seen = Ledgers()
    with listening(seen):
        yield seen


def n_plus_one_of(ledger: QueryLedger) -> list[Any]:
    return [f for f in ledger.findings() if f.kind == "n_plus_one"]


# ----------------------------------------------------------------------------- SQLite


class TestExamplePortalsOnSQLite:
    def test_fastapi_sqlalchemy(self, tmp_path: Path, ledgers: Ledgers) -> None:
        """FastAPI + SQLAlchemy: the N+1 route is 21 statements and flagged at the lazy load."""
        from examples.fastapi_portal.app import create_app

        with UvicornThread(create_app(f"sqlite:///{tmp_path / 'p.db'}")) as server:
            for path in ("/api/invoices/n-plus-one", "/api/invoices/fixed", "/api/customers/3"):
                assert httpx.get(server.url + path).status_code == 200
        (bad,) = ledgers.by_route("/api/invoices/n-plus-one")
        (good,) = ledgers.by_route("/api/invoices/fixed")
        (detail,) = ledgers.by_route("/api/customers/{customer_id}")
        assert (bad.count, good.count) == (21, 2)
        assert detail.count >= 1
        (finding,) = n_plus_one_of(bad)
        assert finding.count == 20
        assert finding.call_site is not None
        assert finding.call_site.startswith("examples/fastapi_portal/app.py:")
        assert "selectinload" in finding.hint
        assert n_plus_one_of(good) == []

    def test_flask_sqlite3(self, tmp_path: Path, ledgers: Ledgers) -> None:
        """Flask + stdlib sqlite3: 21 statements on the N+1 route, 2 on its twin."""
        from examples.flask_portal.app import create_app

        client = create_app(str(tmp_path / "p.db")).test_client()
        for path in ("/api/invoices/n-plus-one", "/api/invoices/fixed"):
            assert client.get(path).status_code == 200
        (bad,) = ledgers.by_route("/api/invoices/n-plus-one")
        (good,) = ledgers.by_route("/api/invoices/fixed")
        assert (bad.count, good.count) == (21, 2)
        (finding,) = n_plus_one_of(bad)
        assert finding.call_site is not None
        assert finding.call_site.startswith("examples/flask_portal/app.py:")
        assert n_plus_one_of(good) == []


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    """A schema of its own with 12 customers x 3 invoices."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"lg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customer (id int PRIMARY KEY, name text)")
        conn.execute(
            f"CREATE TABLE {schema}.invoice (id serial PRIMARY KEY, customer_id int, amount int)"
        )
        for cid in range(1, 13):
            conn.execute(f"INSERT INTO {schema}.customer VALUES (%s, %s)", (cid, f"c{cid}"))
            for j in range(3):
                conn.execute(
                    f"INSERT INTO {schema}.invoice (customer_id, amount) VALUES (%s, %s)",
                    (cid, j * 100),
                )
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _pg_app(schema: str, kind: str, registry: CollectorRegistry) -> tuple[Any, Any]:
    """A Starlette app whose /n/{n} runs n+1 statements (an N+1) with the client ``kind``."""
    customers = f"SELECT id FROM {schema}.customer ORDER BY id LIMIT %s"
    invoices = f"SELECT amount FROM {schema}.invoice WHERE customer_id = %s"
    state: dict[str, Any] = {}

    async def n_route(request: Request) -> Response:
        n = int(request.path_params["n"])
        run = state["run"]
        total = await run(customers, n, invoices)
        return JSONResponse({"n": n, "total": total})

    async def startup() -> None:
        if kind == "psycopg-async":
            import psycopg

            from launchguard.integrations.psycopg import instrument_connection

            conns: asyncio.Queue[Any] = asyncio.Queue()
            for _ in range(8):
                conns.put_nowait(
                    instrument_connection(
                        await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)
                    )
                )
            state["close"] = [conns]

            async def run(parent: str, n: int, child: str) -> int:
                conn = await conns.get()
                try:
                    rows = await (await conn.execute(parent, (n,))).fetchall()
                    total = 0
                    for (cid,) in rows:
                        cur = await conn.execute(child, (cid,))
                        total += sum(a for (a,) in await cur.fetchall())
                    return total
                finally:
                    conns.put_nowait(conn)

        elif kind == "asyncpg":
            import asyncpg

            from launchguard.integrations.asyncpg import GuardedConnection

            pool = await asyncpg.create_pool(
                PG_DSN, min_size=2, max_size=8, connection_class=GuardedConnection
            )
            state["close"] = [pool]

            async def run(parent: str, n: int, child: str) -> int:
                async with pool.acquire() as conn:
                    rows = await conn.fetch(parent.replace("%s", "$1"), n)
                    total = 0
                    for row in rows:
                        amounts = await conn.fetch(child.replace("%s", "$1"), row["id"])
                        total += sum(r["amount"] for r in amounts)
                    return total

        elif kind == "sqlalchemy-async":
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            from launchguard.integrations.sqlalchemy import instrument_engine

            engine = create_async_engine(
                PG_DSN.replace("postgresql://", "postgresql+asyncpg://"), pool_size=8
            )
            instrument_engine(engine)
            state["close"] = [engine]

            async def run(parent: str, n: int, child: str) -> int:
                async with engine.connect() as conn:
                    rows = (await conn.execute(text(parent.replace("%s", ":n")), {"n": n})).all()
                    total = 0
                    for (cid,) in rows:
                        result = await conn.execute(text(child.replace("%s", ":c")), {"c": cid})
                        total += sum(a for (a,) in result.all())
                    return total

        state["run"] = run

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await startup()
        yield
        for resource in state.get("close", []):
            if hasattr(resource, "dispose"):
                await resource.dispose()
            elif hasattr(resource, "close") and asyncio.iscoroutinefunction(resource.close):
                await resource.close()
            elif isinstance(resource, asyncio.Queue):
                while not resource.empty():
                    await resource.get_nowait().close()

    guard = LaunchGuard(registry=registry, environ={}, server_timing=True)
    app = guard.asgi(Starlette(routes=[Route("/n/{n:int}", n_route)], lifespan=lifespan))
    return app, guard


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["psycopg-async", "asyncpg", "sqlalchemy-async"])
def test_async_clients_200_concurrent(
    pg_schema: str, kind: str, registry: CollectorRegistry, ledgers: Ledgers
) -> None:
    """200 concurrent requests, each n+1 statements, each get exactly their own count."""
    app, _ = _pg_app(pg_schema, kind, registry)
    sizes = [i % 12 + 1 for i in range(200)]

    async def hammer(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(*(client.get(f"/n/{n}") for n in sizes))
        return [r.json()["n"] for r in responses]

    with UvicornThread(app, lifespan="on") as server:
        answered = asyncio.run(hammer(server.url))
    assert sorted(answered) == sorted(sizes)
    # asyncpg's pool resets a connection on release with one more statement (RESET ALL ...),
    # inside the request: a real round trip, so it is counted.
    extra = 2 if kind == "asyncpg" else 1
    counts = sorted(ledger.count for ledger in ledgers.by_route("/n/{n}"))
    assert counts == sorted(n + extra for n in sizes)
    samples = scrape(registry)
    assert value(samples, "launchguard_db_queries_per_request_sum") == sum(n + extra for n in sizes)
    flagged = [ledger for ledger in ledgers.by_route("/n/{n}") if n_plus_one_of(ledger)]
    assert len(flagged) == len([n for n in sizes if n >= 5])
    for ledger in flagged:
        assert n_plus_one_of(ledger)[0].call_site.startswith("tests/test_queries_db.py:")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["psycopg", "sqlalchemy"])
def test_threaded_wsgi_server(
    pg_schema: str, kind: str, registry: CollectorRegistry, ledgers: Ledgers
) -> None:
    """A threaded WSGI server: concurrent requests keep exact counts (psycopg, SQLAlchemy)."""
    import psycopg

    from launchguard.integrations.psycopg import instrument_connection

    parent = f"SELECT id FROM {pg_schema}.customer ORDER BY id LIMIT %s"
    child = f"SELECT amount FROM {pg_schema}.invoice WHERE customer_id = %s"
    engine: Any = None
    if kind == "sqlalchemy":
        from sqlalchemy import create_engine, text

        from launchguard.integrations.sqlalchemy import instrument_engine

        engine = create_engine(
            PG_DSN.replace("postgresql://", "postgresql+psycopg://"), pool_size=16
        )
        instrument_engine(engine)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        n = int(environ["PATH_INFO"].rsplit("/", 1)[1])
        if kind == "psycopg":
            with instrument_connection(psycopg.connect(PG_DSN, autocommit=True)) as conn:
                ids = [r[0] for r in conn.execute(parent, (n,)).fetchall()]
                for cid in ids:
                    conn.execute(child, (cid,)).fetchall()
        else:
            with engine.connect() as conn:
                ids = [r[0] for r in conn.execute(text(parent.replace("%s", ":n")), {"n": n})]
                for cid in ids:
                    conn.execute(text(child.replace("%s", ":c")), {"c": cid}).all()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(n).encode()]

    guard = LaunchGuard(registry=registry, environ={}, route_resolver=lambda env: "/n/{n}")
    server = make_server("127.0.0.1", 0, guard.wsgi(app), _ThreadingServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sizes = [i % 9 + 1 for i in range(96)]

    def client(chunk: list[int]) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            for n in chunk:
                assert http.get(f"/n/{n}").text == str(n)

    try:
        threads = [threading.Thread(target=client, args=(sizes[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.shutdown()
        server.server_close()
        if engine is not None:
            engine.dispose()
    counts = sorted(ledger.count for ledger in ledgers.by_route("/n/{n}"))
    assert counts == sorted(n + 1 for n in sizes)


@pytest.mark.postgres
def test_failing_statement_is_counted(pg_schema: str) -> None:
    """A statement that fails still counts (SQLAlchemy's handle_error, psycopg's finally)."""
    import psycopg
    from sqlalchemy import create_engine, text

    from launchguard.integrations.psycopg import instrument_connection
    from launchguard.integrations.sqlalchemy import instrument_engine, uninstrument_engine
    from launchguard.queries import query_ledger

    engine = create_engine(PG_DSN.replace("postgresql://", "postgresql+psycopg://"))
    instrument_engine(engine)
    instrument_engine(engine)  # idempotent
    with query_ledger() as ledger:
        with engine.connect() as conn, pytest.raises(Exception, match="no_such_table"):
            conn.execute(text("SELECT * FROM no_such_table"))
        with psycopg.connect(PG_DSN) as raw:
            instrument_connection(raw)
            with pytest.raises(psycopg.errors.UndefinedTable):
                raw.execute("SELECT * FROM no_such_table_either")
    assert (ledger.count, ledger.errors) == (2, 2)
    uninstrument_engine(engine)
    with query_ledger() as after, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert after.count == 0
    engine.dispose()


@pytest.mark.postgres
def test_django_on_postgresql(tmp_path: Path) -> None:
    """Django on PostgreSQL under uvicorn (sync views in sync_to_async threads): exact counts
    and the N+1 flagged at the example's view line. Runs in its own process (Django's settings
    are per process)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import subprocess
    import sys

    script = Path(__file__).with_name("django_pg_check.py")
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent), LAUNCHGUARD_TEST_PG=PG_DSN)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


@pytest.mark.postgres
def test_asyncpg_query_logger_fallback(pg_schema: str, ledgers: Ledgers) -> None:
    """instrument_connection (asyncpg's query logger) counts exactly, though late."""
    import asyncpg

    from launchguard.integrations.asyncpg import instrument_connection

    state: dict[str, Any] = {}

    async def route(request: Request) -> Response:
        n = int(request.path_params["n"])
        conn = state["conn"]
        for i in range(n):
            await conn.fetchval(f"SELECT count(*) FROM {pg_schema}.invoice WHERE id > $1", i)
        return JSONResponse(n)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        state["conn"] = instrument_connection(await asyncpg.connect(PG_DSN))
        yield
        await state["conn"].close()

    guard = LaunchGuard(registry=CollectorRegistry(), environ={})
    app = guard.asgi(Starlette(routes=[Route("/n/{n:int}", route)], lifespan=lifespan))
    with UvicornThread(app, lifespan="on") as server:
        for n in (1, 3, 6):
            assert httpx.get(f"{server.url}/n/{n}").json() == n
    assert [ledger.count for ledger in ledgers.by_route("/n/{n}")] == [1, 3, 6]


FIRST_REQUEST_SCRIPT = """
import asyncio, sys
import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from launchguard import LaunchGuard
from launchguard.queries import listening

kind, dsn = sys.argv[1], sys.argv[2]
if kind == "sqlite3":
    from launchguard.integrations import sqlite3 as guarded_sqlite3
elif kind == "psycopg-async":
    import psycopg
    from launchguard.integrations.psycopg import instrument_connection
elif kind == "asyncpg-logger":
    import asyncpg
    from launchguard.integrations.asyncpg import instrument_connection
else:
    import asyncpg
    from launchguard.integrations.asyncpg import GuardedConnection


kept = []


async def route(request):
    # The connection is opened inside the request, the first one the process ever opens.
    if kind == "sqlite3":
        conn = guarded_sqlite3.connect(":memory:")
        for i in range(3):
            conn.execute("SELECT ?", (i,)).fetchall()
        conn.close()
    elif kind == "psycopg-async":
        conn = instrument_connection(await psycopg.AsyncConnection.connect(dsn))
        for i in range(3):
            await conn.execute("SELECT %s", (i,))
        await conn.close()
    elif kind == "asyncpg-logger":  # asyncpg's query logger reports a moment later
        if not kept:  # kept open: the last statement's report is still due when the app returns
            kept.append(instrument_connection(await asyncpg.connect(dsn)))
        for i in range(3):
            await kept[0].fetchval("SELECT $1::int", i)
    else:
        conn = await asyncpg.connect(dsn, connection_class=GuardedConnection)
        for i in range(3):
            await conn.fetchval("SELECT $1::int", i)
        await conn.close()
    return JSONResponse("ok")


async def main():
    counts = []
    app = LaunchGuard(registry=CollectorRegistry(), environ={}).asgi(
        Starlette(routes=[Route("/first", route)])
    )
    transport = httpx.ASGITransport(app=app)
    with listening(lambda ledger: counts.append(ledger.count)):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2):
                assert (await client.get("/first")).status_code == 200
    for conn in kept:
        await conn.close()
    print(counts)


asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["sqlite3", "psycopg-async", "asyncpg", "asyncpg-logger"])
def test_first_request_opening_the_first_connection_is_counted(kind: str) -> None:
    """The hook is announced when the integration is imported, so the very first request of a
    process, which opens the first guarded connection, is counted (a fresh interpreter, since
    this process has long had hooks installed). With asyncpg's query logger, first attached
    inside that request, its late reports still land in the request's ledger."""
    import subprocess
    import sys

    if kind != "sqlite3":
        require_service("PostgreSQL", "127.0.0.1", 5432)
    run = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST_SCRIPT, kind, PG_DSN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[3, 3]"
