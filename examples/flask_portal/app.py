"""Client portal on Flask + stdlib sqlite3 (no ORM), guarded by launchguard.

Run from the repo root:  flask --app examples.flask_portal.app run
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from html import escape
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    request,
    send_from_directory,
)
from flask.typing import ResponseReturnValue

from launchguard import LaunchGuard
from launchguard.integrations import sqlite3 as guarded_sqlite3
from launchguard.integrations.flask import init_app

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_DATABASE = str(Path(tempfile.gettempdir()) / "launchguard-portal-flask.db")

SCHEMA = """
CREATE TABLE IF NOT EXISTS customer (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS invoice (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customer (id),
    number TEXT NOT NULL UNIQUE,
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_customer_id ON invoice (customer_id);
CREATE TABLE IF NOT EXISTS profile (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL UNIQUE REFERENCES customer (id),
    company TEXT NOT NULL,
    phone TEXT NOT NULL
);
"""
INVOICE_COLUMNS = "id, customer_id, number, amount_cents, status"


# --- Database -------------------------------------------------------------------------------


def connect(database: str) -> sqlite3.Connection:
    conn = guarded_sqlite3.connect(database)  # sqlite3.connect, with each statement counted
    conn.row_factory = sqlite3.Row
    return conn


def init_db(database: str, customers: int = 20, invoices_each: int = 5) -> None:
    """Create the tables and insert the demo data once."""
    with closing(connect(database)) as db, db:
        db.executescript(SCHEMA)
        if db.execute("SELECT COUNT(*) FROM customer").fetchone()[0]:
            return
        ids = range(1, customers + 1)
        db.executemany(
            "INSERT INTO customer (id, name, email) VALUES (?, ?, ?)",
            [(i, f"Customer {i:02d}", f"customer{i:02d}@example.com") for i in ids],
        )
        db.executemany(
            "INSERT INTO profile (customer_id, company, phone) VALUES (?, ?, ?)",
            [(i, f"Company {i:02d}", f"+1-555-01{i:02d}") for i in ids],
        )
        db.executemany(
            "INSERT INTO invoice (customer_id, number, amount_cents, status) VALUES (?, ?, ?, ?)",
            [
                (i, f"INV-{i:02d}-{j}", 1000 * i + 250 * j, "paid" if j % 2 else "open")
                for i in ids
                for j in range(1, invoices_each + 1)
            ],
        )


def get_db() -> sqlite3.Connection:
    """One connection per request, closed by ``close_db`` at teardown."""
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    db: sqlite3.Connection = g.db
    return db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


# --- Helpers --------------------------------------------------------------------------------


def page(title: str, body: str = "") -> str:
    return (
        '<!doctype html><link rel="stylesheet" href="/static/app.3f9a1c.css">'
        f"<title>{escape(title)}</title><h1>{escape(title)}</h1>{body}"
    )


def invoice_json(row: sqlite3.Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "number", "amount_cents", "status")}


# --- Routes ---------------------------------------------------------------------------------

bp = Blueprint("portal", __name__)


@bp.get("/")
def home() -> str:
    return page("Client portal", '<a href="/login">Sign in</a> <a href="/dashboard">Dashboard</a>')


@bp.get("/login")
def login_form() -> str:
    return page(
        "Sign in",
        '<form method="post" action="/login"><input name="email" type="email">'
        '<input name="password" type="password"><button>Sign in</button></form>',
    )


@bp.post("/login")
def login() -> ResponseReturnValue:
    # Demo only: any form or JSON body signs in. Check real credentials here.
    response = redirect("/dashboard", code=303)
    response.set_cookie(
        "session", secrets.token_urlsafe(16), httponly=True, secure=True, samesite="Lax"
    )
    return response


@bp.get("/dashboard")
def dashboard() -> str:
    totals = get_db().execute(
        "SELECT c.id, c.name, COALESCE(SUM(i.amount_cents), 0) AS total FROM customer c"
        " LEFT JOIN invoice i ON i.customer_id = c.id GROUP BY c.id ORDER BY c.id"
    )
    rows = "".join(
        f'<li><a href="/billing/{r["id"]}">{escape(r["name"])}</a>: ${r["total"] / 100:,.2f}</li>'
        for r in totals
    )
    return page("Dashboard", f"<ul>{rows}</ul>")


@bp.get("/billing/<int:customer_id>")
def billing(customer_id: int) -> str:
    db = get_db()
    customer = db.execute("SELECT name FROM customer WHERE id = ?", (customer_id,)).fetchone()
    if customer is None:
        abort(404)
    invoices = db.execute(
        f"SELECT {INVOICE_COLUMNS} FROM invoice WHERE customer_id = ? ORDER BY id", (customer_id,)
    )
    rows = "".join(
        f"<li>{escape(i['number'])}: ${i['amount_cents'] / 100:,.2f} ({escape(i['status'])})</li>"
        for i in invoices
    )
    return page(f"Billing: {customer['name']}", f"<ul>{rows}</ul>")


@bp.get("/profile")
def profile() -> str:
    if not request.cookies.get("session"):
        abort(401)
    # Demo only: any session cookie is the demo user (customer 1).
    found = get_db().execute("SELECT company FROM profile WHERE customer_id = 1").fetchone()
    company = escape(found["company"]) if found else "-"
    return page("Your profile", f"<p>Company: {company}</p>")


@bp.get("/api/customers")
def list_customers() -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows = get_db().execute("SELECT id, name, email FROM customer ORDER BY id")
    return [dict(row) for row in rows], {"Cache-Control": "private, max-age=30"}


@bp.get("/api/customers/<int:customer_id>")
def get_customer(customer_id: int) -> dict[str, Any] | tuple[dict[str, str], int]:
    row = (
        get_db()
        .execute(
            "SELECT c.id, c.name, c.email, p.company, p.phone FROM customer c"
            " LEFT JOIN profile p ON p.customer_id = c.id WHERE c.id = ?",
            (customer_id,),
        )
        .fetchone()
    )
    if row is None:
        return {"detail": "Customer not found"}, 404
    profile = {"company": row["company"], "phone": row["phone"]} if row["company"] else None
    return {"id": row["id"], "name": row["name"], "email": row["email"], "profile": profile}


@bp.get("/api/invoices/n-plus-one")
def invoices_n_plus_one() -> list[dict[str, Any]]:
    # Deliberate N+1: 1 SELECT for customers, then 1 SELECT of invoices per customer.
    db = get_db()
    customers = db.execute("SELECT id, name FROM customer ORDER BY id").fetchall()
    return [
        {
            "id": c["id"],
            "name": c["name"],
            "invoices": [
                invoice_json(row)
                for row in db.execute(
                    f"SELECT {INVOICE_COLUMNS} FROM invoice WHERE customer_id = ? ORDER BY id",
                    (c["id"],),
                )
            ],
        }
        for c in customers
    ]


@bp.get("/api/invoices/fixed")
def invoices_fixed() -> list[dict[str, Any]]:
    # The fixed twin: every customer's invoices in one `WHERE customer_id IN (...)` (2 total).
    db = get_db()
    customers = db.execute("SELECT id, name FROM customer ORDER BY id").fetchall()
    invoices: dict[int, list[dict[str, Any]]] = {c["id"]: [] for c in customers}
    placeholders = ", ".join("?" * len(invoices))
    for row in db.execute(
        f"SELECT {INVOICE_COLUMNS} FROM invoice WHERE customer_id IN ({placeholders}) ORDER BY id",
        list(invoices),
    ):
        invoices[row["customer_id"]].append(invoice_json(row))
    return [{"id": c["id"], "name": c["name"], "invoices": invoices[c["id"]]} for c in customers]


@bp.get("/slow")
def slow() -> dict[str, int]:
    # Deliberately slow route.
    ms = min(max(request.args.get("ms", 1200, type=int), 0), 5000)
    time.sleep(ms / 1000)
    return {"slept_ms": ms}


@bp.get("/reports/uncached")
def uncached_report() -> dict[str, dict[str, int]]:
    # Deliberately uncached, read-heavy route: no Cache-Control header at all.
    rows = get_db().execute(
        "SELECT status, COUNT(*) AS count, SUM(amount_cents) AS total FROM invoice GROUP BY status"
    )
    return {r["status"]: {"count": r["count"], "total_cents": r["total"]} for r in rows}


@bp.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for i in range(5):
            if i:
                time.sleep(0.05)
            yield f"chunk {i}\n"

    return Response(chunks(), mimetype="text/plain")


@bp.get("/boom")
def boom() -> str:
    raise RuntimeError("boom")


@bp.get("/static/<path:filename>")
def static_asset(filename: str) -> Response:
    # Fingerprinted names (app.3f9a1c.css) never change content, so cache them for a year.
    response = send_from_directory(STATIC_DIR, filename, max_age=31_536_000)
    response.cache_control.public = True
    response.cache_control.immutable = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/promo")
def promo() -> Response:
    # Deliberately wrong, for the header lint: a page a CDN may cache for five minutes that
    # also sets a cookie, so the CDN would hand this visitor's cookie to the next ones.
    response = make_response(page("Launch offer", "<p>20 % off this week.</p>"))
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.set_cookie("campaign", secrets.token_urlsafe(8), httponly=True, samesite="Lax")
    return response


# Nested blueprints: the full route template is /api/v2/articles/<slug>.
articles = Blueprint("articles", __name__, url_prefix="/articles")


@articles.get("/<slug>")
def get_article(slug: str) -> dict[str, str]:
    return {"slug": slug, "title": slug.replace("-", " ").title()}


api_v2 = Blueprint("api_v2", __name__, url_prefix="/api/v2")
api_v2.register_blueprint(articles)


# --- App factory ----------------------------------------------------------------------------


def create_app(database: str | None = None) -> Flask:
    """Build the portal on the SQLite file ``database`` (default: $PORTAL_DB or a temp file)."""
    app = Flask(__name__, static_folder=None)
    app.config["DATABASE"] = database or os.environ.get("PORTAL_DB", DEFAULT_DATABASE)
    init_db(app.config["DATABASE"])
    app.teardown_appcontext(close_db)
    app.register_blueprint(bp)
    app.register_blueprint(api_v2)

    init_app(app, LaunchGuard(service="portal-flask"))
    return app


app = create_app()
