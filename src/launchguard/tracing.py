"""Where a request meets its trace: OpenTelemetry span attributes and histogram exemplars.

Nothing to set up: when the app uses OpenTelemetry (``opentelemetry.trace`` imported by the app
or its instrumentation; the guard never imports it) and a span is current when a request
arrives - the server span of ``opentelemetry-instrumentation-asgi`` / ``-wsgi`` wrapping the
guard, or a span the app's own outer middleware opened - the guard, when the request ends:

- sets ``http.route`` on the span if it is missing (OpenTelemetry's generic ASGI middleware
  never sets it) and renames a span still named ``GET`` or ``GET /raw/path`` to
  ``GET /route/{template}``; adds ``launchguard.db.queries``, ``launchguard.db.time_ms`` and,
  when the request's queries had findings, ``launchguard.db.findings`` (kind, count, SQL shape:
  never a parameter value);
- keeps the trace id as the exemplar of the duration-histogram bucket the request fell in (the
  last one per bucket per series, sampled traces only), shown in OpenMetrics scrapes, so a
  latency spike in Grafana links to a trace.

The span is taken when the request starts, so a WSGI body the server closes after the
instrumentation's ``use_span`` block still reaches it. Under ASGI the attributes are set just
before the last body message goes out (OpenTelemetry's middleware ends its span on that
message), so they count the queries issued until then. Log lines carry ``trace_id`` and
``span_id`` through :func:`launchguard.context.trace_ids`. Without OpenTelemetry a request pays
one dictionary lookup.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import FastHistogram, _SharedHistogram
    from .queries import Finding, QueryLedger
    from .timing import Exchange

__all__ = ["annotate", "current_span", "exemplar"]

#: Most findings listed on a span.
MAX_SPAN_FINDINGS = 10

_modules = sys.modules


def current_span() -> Any:
    """The current OpenTelemetry span, if OpenTelemetry is loaded and the span is valid.

    Libraries import OpenTelemetry's API without tracing anything (FastAPI does, whenever the
    API is installed), so the common answer is "no span": it is found by reading the runtime
    context's ContextVar straight away (one lookup) rather than through
    ``trace.get_current_span()`` (seven calls). When the runtime context is not the stock
    ContextVar one, the public call is used throughout.
    """
    trace: Any = _modules.get("opentelemetry.trace")
    if trace is None:
        return None
    direct = _direct_context if _direct_context is not None else _find_direct_context()
    if direct:
        span = direct[0].get().get(direct[1])
        if span is None:
            return None
    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


#: (the runtime context's ContextVar, the span's context key), () when not available, None
#: until looked up.
_direct_context: tuple[Any, ...] | None = None


def _find_direct_context() -> tuple[Any, ...]:
    global _direct_context
    found: tuple[Any, ...] = ()
    try:
        from contextvars import ContextVar

        from opentelemetry import context as otel_context
        from opentelemetry.trace import propagation

        var = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
        key = getattr(propagation, "_SPAN_KEY", None)
        if isinstance(var, ContextVar) and isinstance(key, str):
            found = (var, key)
    except Exception:  # an OpenTelemetry without these internals: the public call it is
        found = ()
    _direct_context = found
    return found


def annotate(
    span: Any,
    exchange: Exchange,
    route: str | None,
    ledger: QueryLedger | None,
    findings: list[Finding],
) -> None:
    """Put the request's route and query facts on ``span`` (if it is still recording).

    ``route`` is None for the unmatched and overflow labels (not templates).
    """
    if span.is_recording():
        if route is not None:
            attributes = getattr(span, "attributes", None)
            if attributes is None or "http.route" not in attributes:
                span.set_attribute("http.route", route)
                name = getattr(span, "name", None)
                method = exchange.method
                if name == method or (exchange.path and name == f"{method} {exchange.path}"):
                    span.update_name(f"{method} {route}")
        if ledger is not None:
            span.set_attribute("launchguard.db.queries", ledger.count)
            span.set_attribute("launchguard.db.time_ms", round(ledger.seconds * 1000, 3))
        if findings:
            span.set_attribute(
                "launchguard.db.findings",
                [f"{f.kind}: {f.count} x {f.sql}" for f in findings[:MAX_SPAN_FINDINGS]],
            )


def exemplar(
    span: Any,
    key: tuple[str, str, str, str],
    seconds: float,
    histogram: FastHistogram | _SharedHistogram,
) -> None:
    """Keep the trace id of ``span`` as the exemplar of the request's duration bucket (the
    series ``key``), if the trace is sampled."""
    context = span.get_span_context()
    if context.trace_flags.sampled:
        histogram.exemplar(
            key,
            seconds,
            {
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            },
        )
