import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from html import escape
from pathlib import Path
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods

from .models import Customer, Invoice


def page(title: str, body: str = "", status: int = 200) -> HttpResponse:
    return HttpResponse(
        f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>{body}",
        status=status,
    )


def invoice_json(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "amount_cents": invoice.amount_cents,
        "status": invoice.status,
    }


def with_invoices(customer: Customer) -> dict[str, Any]:
    invoices = [invoice_json(invoice) for invoice in customer.invoices.all()]
    return {"id": customer.id, "name": customer.name, "invoices": invoices}


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return page("Client portal", '<a href="/login">Sign in</a> <a href="/dashboard">Dashboard</a>')


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return page(
            "Sign in",
            '<form method="post" action="/login"><input name="email" type="email">'
            '<input name="password" type="password">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">'
            "<button>Sign in</button></form>",
        )
    # Demo only: any form or JSON body signs in. Check real credentials here.
    response = HttpResponseRedirect("/dashboard", status=303)
    response.set_cookie(
        "session", secrets.token_urlsafe(16), httponly=True, secure=True, samesite="Lax"
    )
    return response


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    customers = Customer.objects.annotate(total=Coalesce(Sum("invoices__amount_cents"), 0))
    rows = "".join(
        f'<li><a href="/billing/{c.id}">{escape(c.name)}</a>: ${c.total / 100:,.2f}</li>'
        for c in customers
    )
    return page("Dashboard", f"<ul>{rows}</ul>")


@require_GET
def billing(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=customer_id)
    rows = "".join(
        f"<li>{escape(i.number)}: ${i.amount_cents / 100:,.2f} ({escape(i.status)})</li>"
        for i in customer.invoices.all()
    )
    return page(f"Billing: {customer.name}", f"<ul>{rows}</ul>")


@require_GET
def profile(request: HttpRequest) -> HttpResponse:
    if not request.COOKIES.get("session"):
        return page("Sign in first", status=401)
    # Demo only: any session cookie is the demo user (customer 1).
    customer = Customer.objects.select_related("profile").filter(pk=1).first()
    company = escape(customer.profile.company) if customer else "-"
    return page("Your profile", f"<p>Company: {company}</p>")


@require_GET
def list_customers(request: HttpRequest) -> JsonResponse:
    customers = list(Customer.objects.values("id", "name", "email"))
    response = JsonResponse(customers, safe=False)
    response["Cache-Control"] = "private, max-age=30"
    return response


@require_GET
def get_customer(request: HttpRequest, customer_id: int) -> JsonResponse:
    customer = Customer.objects.select_related("profile").filter(pk=customer_id).first()
    if customer is None:
        return JsonResponse({"detail": "Customer not found"}, status=404)
    profile = getattr(customer, "profile", None)  # None when the customer has no profile
    return JsonResponse(
        {
            "id": customer.id,
            "name": customer.name,
            "email": customer.email,
            "profile": profile and {"company": profile.company, "phone": profile.phone},
        }
    )


@require_GET
def invoices_n_plus_one(request: HttpRequest) -> JsonResponse:
    # Deliberate N+1: 1 SELECT for customers, then 1 SELECT per customer.invoices.all().
    return JsonResponse([with_invoices(c) for c in Customer.objects.all()], safe=False)


@require_GET
def invoices_fixed(request: HttpRequest) -> JsonResponse:
    # The fixed twin: prefetch_related loads every customer's invoices in 1 more SELECT (2 total).
    customers = Customer.objects.prefetch_related("invoices")
    return JsonResponse([with_invoices(c) for c in customers], safe=False)


@require_GET
async def slow(request: HttpRequest) -> HttpResponse:
    # Deliberately slow route.
    try:
        ms = min(max(int(request.GET.get("ms", "1200")), 0), 5000)
    except ValueError:
        return HttpResponseBadRequest("ms must be an integer")
    await asyncio.sleep(ms / 1000)
    return JsonResponse({"slept_ms": ms})


@require_GET
def uncached_report(request: HttpRequest) -> JsonResponse:
    # Deliberately uncached, read-heavy route: no Cache-Control header at all.
    rows = Invoice.objects.values("status").annotate(count=Count("id"), total=Sum("amount_cents"))
    report = {r["status"]: {"count": r["count"], "total_cents": r["total"]} for r in rows}
    return JsonResponse(report)


def chunks() -> Iterator[str]:
    for i in range(5):
        if i:
            time.sleep(0.05)
        yield f"chunk {i}\n"


async def achunks() -> AsyncIterator[str]:
    for i in range(5):
        if i:
            await asyncio.sleep(0.05)
        yield f"chunk {i}\n"


@require_GET
def stream(request: HttpRequest) -> StreamingHttpResponse:
    # Give ASGI servers an async iterator and WSGI servers a sync one; Django warns otherwise.
    content = achunks() if isinstance(request, ASGIRequest) else chunks()
    return StreamingHttpResponse(content, content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


@require_GET
@cache_control(public=True, max_age=300)
def promo(request: HttpRequest) -> HttpResponse:
    # Deliberately wrong, for the header lint: a page a CDN may cache for five minutes that
    # also sets a cookie, so the CDN would hand this visitor's cookie to the next ones.
    response = page("Launch offer", "<p>20 % off this week.</p>")
    response.set_cookie("campaign", secrets.token_urlsafe(8), httponly=True, samesite="Lax")
    return response


STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "flask_portal" / "static"
STATIC_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}


@require_GET
@cache_control(public=True, max_age=31_536_000, immutable=True)
def static_asset(request: HttpRequest, filename: str) -> HttpResponse:
    # Fingerprinted names (app.3f9a1c.css) never change content: cache them for a year.
    # (In production, serve these with WhiteNoise or the CDN; this view keeps the demo small.)
    path = STATIC_FILES.get(filename)
    if path is None:
        raise Http404("no such asset")
    return HttpResponse(path.read_bytes(), content_type="text/css")


@require_GET
def archive(request: HttpRequest, year: str) -> HttpResponse:
    return page(f"Invoice archive {year}", "<p>No archived invoices.</p>")


@require_GET
def get_article(request: HttpRequest, slug: str) -> JsonResponse:
    return JsonResponse({"slug": slug, "title": slug.replace("-", " ").title()})
