"""Run by test_queries_db.test_django_on_postgresql in its own process (Django settings are
per process): the Django example portal on a fresh PostgreSQL database, served by uvicorn."""

from __future__ import annotations

import os
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

sys.path.insert(0, os.getcwd())
from tests.helpers import UvicornThread

admin_dsn = os.environ["LAUNCHGUARD_TEST_PG"]
name = f"lg_django_{uuid.uuid4().hex[:8]}"
parts = urlsplit(admin_dsn)
os.environ["PORTAL_PG_DSN"] = urlunsplit(parts._replace(path="/" + name))
os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_portal.portal.settings"
os.environ["PORTAL_REPLICA_DB"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"{name}-replica.sqlite3"
)

with psycopg.connect(admin_dsn, autocommit=True) as conn:
    conn.execute(f'CREATE DATABASE "{name}"')
try:
    import django
    from django.core.handlers.asgi import ASGIHandler
    from django.core.management import call_command

    from launchguard.queries import listening

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connections

    seen = []
    with listening(seen.append), UvicornThread(ASGIHandler()) as server:
        for path in ("/api/invoices/n-plus-one", "/api/invoices/fixed", "/api/customers/2"):
            response = httpx.get(server.url + path, timeout=20)
            assert response.status_code == 200, (path, response.status_code)
    by_route = {ledger.route: ledger for ledger in seen}
    bad = by_route["/api/invoices/n-plus-one"]
    good = by_route["/api/invoices/fixed"]
    assert (bad.count, good.count) == (21, 2), (bad.count, good.count, bad.shapes())
    (finding,) = [f for f in bad.findings() if f.kind == "n_plus_one"]
    assert finding.call_site, finding
    assert finding.call_site.startswith("examples/django_portal/billing/views.py:"), finding
    assert "prefetch_related" in finding.hint
    assert not [f for f in good.findings() if f.kind == "n_plus_one"]
    assert by_route["/api/customers/{customer_id}"].count >= 1

    # Two aliases (PostgreSQL and a SQLite replica), queried from a fresh sync_to_async worker
    # thread whose connections open there: both statements land in the caller's ledger.
    import asyncio

    from asgiref.sync import sync_to_async
    from examples.django_portal.billing.models import Customer

    from launchguard.queries import query_ledger

    call_command("migrate", database="replica", verbosity=0)

    def read_both() -> tuple[int, int]:
        return Customer.objects.using("replica").count(), Customer.objects.count()

    async def in_worker_thread() -> tuple[tuple[int, int], int]:
        with query_ledger() as ledger:
            counts = await sync_to_async(read_both, thread_sensitive=False)()
        return counts, ledger.count

    (replica_count, default_count), statements = asyncio.run(in_worker_thread())
    assert replica_count == default_count == 20, (replica_count, default_count)
    assert statements == 2, statements
    connections.close_all()
    os.remove(os.environ["PORTAL_REPLICA_DB"])
    print("OK")
finally:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
