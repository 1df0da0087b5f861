"""Where a request is timed: the per-request core shared by the ASGI and WSGI adapters.

An adapter calls :meth:`RequestTimer.begin` when a request arrives, fills in the
:class:`Exchange` as it watches the response go out (status, last body byte, disconnect, route),
and calls :meth:`RequestTimer.finish` exactly once when the app returns or raises. The rules of
what gets recorded live here, once:

- the duration ends at the last body byte (``Exchange.end``), so background work the app does
  after the response is complete is not counted;
- an exception before the response started is a 500 with ``error_type`` = the exception class;
  an exception after it started keeps the sent status and still sets ``error_type``;
- a 5xx without an exception sets ``error_type`` to the status code (OpenTelemetry's rule);
- a client that disconnected before the response was complete is a 499, even if the app
  went on to send a response nobody received;
- unknown methods are ``_OTHER``.

Nothing here raises into the request: a failure is handed to :class:`InternalErrors`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import Token
from time import perf_counter
from typing import TYPE_CHECKING, Any

from . import context, queries, tracing
from .context import exchange_var, new_request_id, request_id_var, valid_request_id
from .headerlint import warn_about as warn_about_headers
from .queries import (
    Finding,
    QueryLedger,
    QueryReporter,
    QueryRules,
    close_ledger,
    warn_about,
)
from .queries import _current as ledger_var
from .routes import OVERFLOW

if TYPE_CHECKING:
    from ._config import Config
    from ._internal import InternalErrors
    from .access import AccessLog
    from .budgets import BudgetWatch
    from .headerlint import HeaderLinter
    from .lint import Finding as LintFinding
    from .metrics import RequestMetrics

__all__ = ["Exchange", "RequestTimer", "normalize_method"]

KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
_STATUS_TEXT = {code: str(code) for code in range(100, 600)}
_loaded = sys.modules.get
_new = object.__new__
#: The findings of a request without statements (never changed: a fresh list is made when
#: there are findings).
_NO_FINDINGS: list[Finding] = []


def normalize_method(method: str) -> str:
    """The method label: a known HTTP method, else ``_OTHER``."""
    return method if method in KNOWN_METHODS else "_OTHER"


class Exchange:
    """What the adapter saw of one request and its response.

    No ``__slots__``: the class attributes are the defaults, so a request pays only for the
    fields it sets (a per-request saving the hot path measures).
    """

    #: When the last body byte was handed to the server; 0.0 until then.
    end = 0.0
    #: The response status once ``start_response`` / ``http.response.start`` was sent.
    status = 0
    complete = False
    #: The client went away before the response was complete.
    disconnected = False
    route: str | None = None
    error_type = ""
    #: The request's query ledger, while it is open.
    ledger: QueryLedger | None = None
    token: Token[QueryLedger | None] | None = None
    #: Request facts the access log needs, filled in by the adapter.
    path = ""
    query = ""
    client: str | None = None
    forwarded_for: str | None = None
    request_id = ""
    #: ``request_id`` was made here (32 hex digits), not taken from the request.
    request_id_made = False
    rid_token: Token[str | None] | None = None
    #: The response headers as the app sent them (for the header linter); None until then.
    headers: Any = None
    #: Request facts the header linter reads: ``headerlint.FLAG_*`` bits.
    flags = 0
    #: The OpenTelemetry span current when the request arrived (only with OpenTelemetry).
    span: Any = None
    span_annotated = False
    #: With a span: the ASGI scope and the guard's root path, to annotate the span with.
    span_scope: tuple[Any, str] | None = None
    exchange_token: Token[Any] | None = None

    def __init__(self, method: str, start: float) -> None:
        self.method = method
        self.start = start

    def body_done(self) -> None:
        """Mark the last body byte as sent, now."""
        self.end = perf_counter()
        self.complete = True

    def server_timing(self) -> str | None:
        """A ``Server-Timing`` value with the DB time and count so far, if a ledger is open."""
        ledger = self.ledger
        if ledger is None:
            return None
        return f'db;dur={ledger.seconds * 1000:.1f};desc="{ledger.count} queries"'


class RequestTimer:
    """Records each request into the metrics, with the rules in the module docstring."""

    def __init__(
        self,
        metrics: RequestMetrics,
        errors: InternalErrors,
        config: Config,
        access_log: AccessLog | None = None,
        redact: Callable[[str], str] | None = None,
        linter: HeaderLinter | None = None,
        watch: BudgetWatch | None = None,
    ) -> None:
        self.access_log = access_log
        self.linter = linter
        #: The in-process budget watch and alerts (``None`` with ``alerts=False``).
        self.watch = watch
        self._warn = config.warn_findings
        #: Nothing but the request metrics to do once the request is recorded (unless the
        #: request itself holds a ledger, a span or a context to reset).
        self._metrics_only = linter is None and access_log is None and watch is None
        #: Masks secrets; an incoming request id it would change is not kept.
        self.redact = redact
        self._metrics = metrics
        self._starter = metrics.starter
        #: method -> the callable that counts a request of it in flight (made on first use).
        self._starts: dict[str, Callable[[], object]] = {}
        self._record = metrics.store.record
        self._queries_observe = metrics.queries.observe
        self._errors = errors
        self._unmatched = config.unmatched_route
        self._request_ids = config.request_ids
        self._queries = config.queries
        self.rules = QueryRules(
            n_plus_one_threshold=config.n_plus_one_threshold,
            n_plus_one_writes=config.n_plus_one_writes,
            query_budget=config.query_budget,
            route_query_budgets=dict(config.route_query_budgets),
            slow_query=config.slow_query,
        )
        self.reporter = QueryReporter(
            lambda route, kind: metrics.findings.labels(route, kind).inc(),
            interval=config.findings_log_interval,
            warn=config.warn_findings,
        )

    def begin(self, method: str, request_id: str | None = None) -> Exchange:
        """Start timing a request: its request id (``request_id`` if well formed, else a new
        one) and its query ledger (when a database hook is installed)."""
        method = method if method in KNOWN_METHODS else "_OTHER"
        try:
            try:
                start = self._starts[method]
            except KeyError:
                start = self._starts[method] = self._starter(method)
            start()
        except Exception as exc:
            self._errors.record("metrics", exc)
        exchange = _new(Exchange)  # Exchange(method, start) without an __init__ frame
        exchange.method = method
        exchange.start = perf_counter()
        if self._request_ids:
            if (
                request_id is None
                or not valid_request_id(request_id)
                or (self.redact is not None and self.redact(request_id) != request_id)
            ):
                request_id = new_request_id()  # none, malformed, or shaped like a secret
                exchange.request_id_made = True
            exchange.request_id = request_id
            exchange.rid_token = request_id_var.set(request_id)
        if self._queries and queries.hooks_installed:  # open_ledger(), inline
            ledger = exchange.ledger = _new(QueryLedger)  # QueryLedger(), no __init__ frame
            exchange.token = ledger_var.set(ledger)
        if context.track_exchange:
            exchange.exchange_token = exchange_var.set(exchange)
        if _loaded("opentelemetry.trace") is not None:
            try:
                exchange.span = tracing.current_span()
            except Exception as error:
                self._errors.record("otel", error)
        return exchange

    def finish(self, exchange: Exchange, exc: BaseException | None = None) -> None:
        """Record ``exchange`` once the app has returned (``exc`` is None) or raised."""
        route = exchange.route or self._unmatched
        end = exchange.end or perf_counter()
        status = exchange.status
        error_type = exchange.error_type
        key = None
        try:
            if exc is not None:
                error_type = type(exc).__qualname__
            if not status:  # nothing was sent: the server answers 500
                status = 500
            if exchange.disconnected:
                status = 499
            elif status >= 500 and not error_type:
                error_type = _STATUS_TEXT.get(status, "_OTHER")
            if error_type:
                error_type = self._metrics.bound_error_type(error_type)
            key = (exchange.method, route, _STATUS_TEXT.get(status, "_OTHER"), error_type)
            self._record(key, end - exchange.start)
        except Exception as error:
            self._errors.record("metrics", error)
        ledger = exchange.ledger
        if (
            self._metrics_only
            and ledger is None
            and exchange.span is None
            and exchange.exchange_token is None
            and exchange.rid_token is None
        ):
            return
        findings: list[Finding] = _NO_FINDINGS
        if ledger is not None:  # close it, count its statements, find N+1 and the like
            exchange.ledger = None
            try:
                ledger.route = route
                if exchange.token is not None:
                    close_ledger(ledger, exchange.token)
                self._queries_observe(route, ledger.count, ledger.seconds)
                if ledger.count:
                    findings = ledger.findings(self.rules)
                    if findings:
                        self.reporter.report(route, findings)
            except Exception as error:
                self._errors.record("queries", error)
        lint_findings: tuple[LintFinding, ...] = ()
        if self.linter is not None and exchange.headers is not None:
            try:
                lint_findings = self.linter.observe(exchange, route, end)
            except Exception as error:
                self._errors.record("lint", error)
        if self.access_log is not None:
            try:
                self.access_log.log(
                    exchange, route, status, error_type, end - exchange.start, ledger
                )
            except Exception as error:
                self._errors.record("access_log", error)
        if self.watch is not None:
            try:
                self.watch.observe(
                    exchange, route, status, end - exchange.start, end, ledger, findings
                )
            except Exception as error:
                self._errors.record("budgets", error)
        span = exchange.span
        if span is not None:
            try:
                if not exchange.span_annotated:
                    tracing.annotate(span, exchange, self._template(route), ledger, findings)
                if key is not None:
                    tracing.exemplar(span, key, end - exchange.start, self._metrics.store)
            except Exception as error:
                self._errors.record("otel", error)
        if exchange.exchange_token is not None:
            try:
                exchange_var.reset(exchange.exchange_token)
            except ValueError:  # finished in another context
                pass
            exchange.exchange_token = None
        token = exchange.rid_token
        if token is not None:
            exchange.rid_token = None
            try:
                request_id_var.reset(token)
            except ValueError:  # finished in another context (a WSGI body closed elsewhere)
                pass
        if self._warn:  # outside the guard: a suite's filterwarnings=error must raise
            if findings:
                warn_about(findings)
            if lint_findings:
                warn_about_headers(route, lint_findings)

    def annotate_span(self, exchange: Exchange, route: str) -> None:
        """Put the request's route and queries so far on its span now: the ASGI adapter calls
        this before the last body message, on which OpenTelemetry's middleware ends the span."""
        exchange.span_annotated = True
        try:
            if not exchange.span.is_recording():  # not sampled, or already ended
                return
            ledger = exchange.ledger
            findings = ledger.findings(self.rules) if ledger is not None and ledger.count else []
            tracing.annotate(exchange.span, exchange, self._template(route), ledger, findings)
        except Exception as error:
            self._errors.record("otel", error)

    def _template(self, route: str) -> str | None:
        """``route`` if it is a template (not the unmatched or overflow label)."""
        return None if route == self._unmatched or route == OVERFLOW else route
