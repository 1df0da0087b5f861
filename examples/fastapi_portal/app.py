"""Client portal on FastAPI + SQLAlchemy 2.x (sync ORM, SQLite), guarded by launchguard.

Run from the repo root:  uvicorn examples.fastapi_portal.app:app
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from html import escape
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, create_engine, func, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)
from sqlalchemy.pool import StaticPool

from launchguard import LaunchGuard
from launchguard.asgi import LaunchGuardMiddleware
from launchguard.integrations.sqlalchemy import instrument_engine

DEFAULT_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'launchguard-portal-fastapi.db'}"


# --- Models ---------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), unique=True)
    invoices: Mapped[list[Invoice]] = relationship(back_populates="customer", order_by="Invoice.id")
    profile: Mapped[Profile | None] = relationship(back_populates="customer")


class Invoice(Base):
    __tablename__ = "invoice"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    amount_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(10))
    customer: Mapped[Customer] = relationship(back_populates="invoices")


class Profile(Base):
    __tablename__ = "profile"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), unique=True)
    company: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(30))
    customer: Mapped[Customer] = relationship(back_populates="profile")


def seed(session: Session, customers: int = 20, invoices_each: int = 5) -> None:
    """Insert the demo data once; a no-op when customers already exist."""
    if session.scalar(select(func.count(Customer.id))):
        return
    for i in range(1, customers + 1):
        customer = Customer(id=i, name=f"Customer {i:02d}", email=f"customer{i:02d}@example.com")
        customer.profile = Profile(company=f"Company {i:02d}", phone=f"+1-555-01{i:02d}")
        customer.invoices = [
            Invoice(
                number=f"INV-{i:02d}-{j}",
                amount_cents=1000 * i + 250 * j,
                status="paid" if j % 2 else "open",
            )
            for j in range(1, invoices_each + 1)
        ]
        session.add(customer)
    session.commit()


# --- Schemas --------------------------------------------------------------------------------


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str


class ProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    company: str
    phone: str


class CustomerDetail(CustomerOut):
    profile: ProfileOut | None


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    amount_cents: int
    status: str


class CustomerInvoices(BaseModel):
    id: int
    name: str
    invoices: list[InvoiceOut]


# --- Helpers --------------------------------------------------------------------------------


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def page(title: str, body: str = "") -> HTMLResponse:
    title = escape(title)
    return HTMLResponse(f"<!doctype html><title>{title}</title><h1>{title}</h1>{body}")


def with_invoices(customer: Customer) -> CustomerInvoices:
    invoices = [InvoiceOut.model_validate(invoice) for invoice in customer.invoices]
    return CustomerInvoices(id=customer.id, name=customer.name, invoices=invoices)


# --- Routes ---------------------------------------------------------------------------------

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def home() -> HTMLResponse:
    return page("Client portal", '<a href="/login">Sign in</a> <a href="/dashboard">Dashboard</a>')


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return page(
        "Sign in",
        '<form method="post" action="/login"><input name="email" type="email">'
        '<input name="password" type="password"><button>Sign in</button></form>',
    )


@router.post("/login")
def login() -> RedirectResponse:
    # Demo only: any form or JSON body signs in. Check real credentials here.
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        "session", secrets.token_urlsafe(16), httponly=True, secure=True, samesite="lax"
    )
    return response


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(session: SessionDep) -> HTMLResponse:
    totals = session.execute(
        select(Customer.id, Customer.name, func.coalesce(func.sum(Invoice.amount_cents), 0))
        .outerjoin(Invoice)
        .group_by(Customer.id)
        .order_by(Customer.id)
    )
    rows = "".join(
        f'<li><a href="/billing/{cid}">{escape(name)}</a>: ${total / 100:,.2f}</li>'
        for cid, name, total in totals
    )
    return page("Dashboard", f"<ul>{rows}</ul>")


@router.get("/billing/{customer_id}", response_class=HTMLResponse)
def billing(customer_id: int, session: SessionDep) -> HTMLResponse:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise HTTPException(404, "Customer not found")
    rows = "".join(
        f"<li>{escape(i.number)}: ${i.amount_cents / 100:,.2f} ({escape(i.status)})</li>"
        for i in customer.invoices
    )
    return page(f"Billing: {customer.name}", f"<ul>{rows}</ul>")


@router.get("/profile", response_class=HTMLResponse)
def profile(request: Request, session: SessionDep) -> HTMLResponse:
    if not request.cookies.get("session"):
        raise HTTPException(401, "Sign in first")
    # Demo only: any session cookie is the demo user (customer 1).
    found = session.scalar(select(Profile).where(Profile.customer_id == 1))
    company = escape(found.company) if found else "-"
    return page("Your profile", f"<p>Company: {company}</p>")


@router.get("/api/customers")
def list_customers(session: SessionDep, response: Response) -> list[CustomerOut]:
    response.headers["Cache-Control"] = "private, max-age=30"
    customers = session.scalars(select(Customer).order_by(Customer.id))
    return [CustomerOut.model_validate(c) for c in customers]


@router.get("/api/customers/{customer_id}")
def get_customer(customer_id: int, session: SessionDep) -> CustomerDetail:
    customer = session.get(Customer, customer_id, options=[selectinload(Customer.profile)])
    if customer is None:
        raise HTTPException(404, "Customer not found")
    return CustomerDetail.model_validate(customer)


@router.get("/api/invoices/n-plus-one")
def invoices_n_plus_one(session: SessionDep) -> list[CustomerInvoices]:
    # Deliberate N+1: 1 SELECT for customers, then 1 lazy SELECT per customer.invoices.
    customers = session.scalars(select(Customer).order_by(Customer.id))
    return [with_invoices(customer) for customer in customers]


@router.get("/api/invoices/fixed")
def invoices_fixed(session: SessionDep) -> list[CustomerInvoices]:
    # The fixed twin: selectinload fetches every customer's invoices in 1 more SELECT (2 total).
    query = select(Customer).options(selectinload(Customer.invoices)).order_by(Customer.id)
    return [with_invoices(customer) for customer in session.scalars(query)]


@router.get("/slow")
async def slow(ms: Annotated[int, Query(ge=0)] = 1200) -> dict[str, int]:
    # Deliberately slow route.
    ms = min(ms, 5000)
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@router.get("/reports/uncached")
def uncached_report(session: SessionDep) -> dict[str, dict[str, int]]:
    # Deliberately uncached, read-heavy route: no Cache-Control header at all.
    rows = session.execute(
        select(Invoice.status, func.count(), func.sum(Invoice.amount_cents)).group_by(
            Invoice.status
        )
    )
    return {status: {"count": count, "total_cents": total} for status, count, total in rows}


@router.get("/stream")
def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(5):
            if i:
                await asyncio.sleep(0.05)
            yield f"chunk {i}\n"

    return StreamingResponse(chunks(), media_type="text/plain")


@router.get("/boom")
def boom() -> None:
    raise RuntimeError("boom")


@router.get("/promo", response_class=HTMLResponse)
def promo() -> HTMLResponse:
    # Deliberately wrong, for the header lint: a page a CDN may cache for five minutes that
    # also sets a cookie, so the CDN would hand this visitor's cookie to the next ones.
    response = page("Launch offer", "<p>20 % off this week.</p>")
    response.headers["Cache-Control"] = "public, max-age=300"
    response.set_cookie("campaign", secrets.token_urlsafe(8), httponly=True, samesite="lax")
    return response


# The Flask portal's assets: next to this file in an installed wheel (launchguard/_portal/static),
# in the Flask example's folder in a source checkout.
_HERE = Path(__file__).resolve().parent
STATIC_DIR = next(
    (d for d in (_HERE / "static", _HERE.parent / "flask_portal" / "static") if d.is_dir()),
    _HERE / "static",
)
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}


@router.get("/static/{filename}")
def static_asset(filename: str) -> Response:
    # Fingerprinted names (app.3f9a1c.css) never change content: cache them for a year.
    path = STATIC_FILES.get(filename)
    if path is None:
        raise HTTPException(status_code=404, detail="no such asset")
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(path.read_bytes(), media_type="text/css", headers=headers)


# A nested router: the full route template is /api/v2/articles/{slug}.
articles = APIRouter(prefix="/articles")


@articles.get("/{slug}")
def get_article(slug: str) -> dict[str, str]:
    return {"slug": slug, "title": slug.replace("-", " ").title()}


api_v2 = APIRouter(prefix="/api/v2")
api_v2.include_router(articles)


def create_admin_app() -> FastAPI:
    """A separate ASGI app, mounted at /admin."""
    admin = FastAPI(title="Portal admin")

    @admin.get("/users/{user_id}")
    def get_user(user_id: int) -> dict[str, int | str]:
        return {"id": user_id, "role": "admin"}

    return admin


# --- App factory ----------------------------------------------------------------------------


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the portal. ``sqlite://`` gives a private in-memory database (handy in tests)."""
    url = database_url or os.environ.get("PORTAL_DATABASE_URL", DEFAULT_DATABASE_URL)
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False},
        poolclass=StaticPool if in_memory else None,
    )
    instrument_engine(engine)  # count and fingerprint every statement, per request
    Base.metadata.create_all(engine)
    make_session = sessionmaker(engine)
    with make_session() as session:
        seed(session)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="Client portal", lifespan=lifespan)
    app.state.sessionmaker = make_session
    app.include_router(router)
    app.include_router(api_v2)
    app.mount("/admin", create_admin_app())

    app.add_middleware(LaunchGuardMiddleware, guard=LaunchGuard(service="portal-fastapi"))
    return app


app = create_app()
