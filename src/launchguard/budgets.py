"""Latency budgets, watched in process: a rolling p95 per route, judged against its budget.

    guard = LaunchGuard(
        service="portal",
        route_budgets={"/dashboard": 1.0, "/api/reports/*": 2.0},  # the rest: api / page budget
    )

**The budget of a route** is its ``route_budgets`` entry (the exact template, else the longest
matching glob pattern; class ``custom``), else ``page_budget`` when its responses are HTML
(``Content-Type: text/html``; class ``page``), else ``api_budget`` (class ``api``). The class is
read from the route's first 2xx or 3xx response (no ``Content-Type``: ``api``) and then kept, so
no header is looked at after it; until then the route is judged against ``api_budget``. Budgets
are exported as ``launchguard_route_budget_seconds{http_route,route_class}`` (the generated
Prometheus rules join on it): exact ``route_budgets`` entries from the start, other routes once
their class is known. Requests no route matched, and routes past ``max_routes``, are not
watched.

**How the p95 is kept.** Each route has a ring of :data:`SLOTS` (30) small histograms, each
covering ``budget_window / 30`` seconds (10 s of the default 5-minute window), over the duration
histogram's bucket bounds plus every budget. A request costs a dict lookup, a ``bisect`` and an
increment; the ring is summed and judged at most once per route every :data:`JUDGE_INTERVAL`
seconds, and only once the window holds ``budget_min_samples`` requests (every status counts,
as in a ``histogram_quantile`` over ``http_server_request_duration_seconds``). Memory is bounded:
at most ``max_routes`` routes, each at most 30 x (bounds + 1) four-byte counters, allocated as
slots fill. Increments take no lock: two threads finishing one route at the same instant may
(rarely) lose a count, which an estimate tolerates.

**Accuracy.** The window is the last ``budget_window`` seconds to within one slot (it spans 29 to
30 slots); within it the counts are exact, so

- "p95 over budget" is decided exactly: every budget is a bucket bound, and a route is over
  budget when fewer than 95 % of its requests in the window took at most the budget, which is
  the same as the exact (nearest-rank) p95 of those requests being over it;
- the p95 value reported is interpolated inside its bucket as Prometheus's ``histogram_quantile``
  does, so it lies in the same bucket as the exact p95 and, with the default ``buckets``,
  agrees with a Prometheus query over the same window.

**A breach** (the p95 goes over budget) sets ``launchguard_route_budget_breached{http_route}``
to 1, writes a warning on the ``launchguard.budgets`` logger (``route``, ``method``, ``p95_ms``,
``budget_ms``, ``samples``, ``route_class``) and, when sentry-sdk is initialised, sends a Sentry
event fingerprinted ``["launchguard", "slow-endpoint", method, route]`` (``method``: the method
of most of the route's over-budget requests). The log line and the event come at most once per
route per ``alert_cooldown``; the recovery (back within budget, or no request for a whole window)
sets the gauge to 0 and is logged if the breach was. An N+1 finding reaches Sentry fingerprinted
``["launchguard", "n-plus-one", route, fingerprint]``, once per route and fingerprint per
cooldown. A single request slower than ``slow_request`` is logged with its query breakdown
(count, DB time, the most frequent SQL shapes, the findings), once per route per
``findings_log_interval``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

from ._throttle import Throttle
from .routes import OVERFLOW

if TYPE_CHECKING:
    from ._config import Config
    from ._internal import InternalErrors
    from .metrics import RequestMetrics
    from .queries import Finding, QueryLedger
    from .redact import Redactor
    from .timing import Exchange

__all__ = [
    "JUDGE_INTERVAL",
    "SLOTS",
    "BudgetWatch",
    "SentryAlerts",
    "histogram_quantile",
    "route_budget",
    "watch_bounds",
]

#: Slots in a route's ring; each covers ``budget_window / SLOTS`` seconds.
SLOTS = 30
#: Least seconds between two judgments of one route.
JUDGE_INTERVAL = 5.0
QUANTILE = 0.95
#: SQL shapes listed in a slow request's log line.
TOP_SHAPES = 3

logger = logging.getLogger("launchguard.budgets")

_GLOB = frozenset("*?[")


def route_budget(config: Config, route: str, *, page: bool) -> tuple[float, str]:
    """(seconds, route class) of ``route`` under ``config``: its ``route_budgets`` entry (exact
    template first, else the longest matching glob), else the page or API budget."""
    best: tuple[int, float] | None = None
    for pattern, seconds in config.route_budgets:
        if pattern == route:
            return seconds, "custom"
        glob = _GLOB.intersection(pattern) and fnmatchcase(route, pattern)
        if glob and (best is None or len(pattern) > best[0]):
            best = (len(pattern), seconds)
    if best is not None:
        return best[1], "custom"
    return (config.page_budget, "page") if page else (config.api_budget, "api")


def watch_bounds(config: Config) -> tuple[float, ...]:
    """The watch's bucket bounds: the duration histogram's plus every budget."""
    budgets = {config.api_budget, config.page_budget, config.slow_request}
    budgets.update(seconds for _, seconds in config.route_budgets)
    return tuple(sorted(set(config.histogram_buckets) | budgets))


def histogram_quantile(q: float, counts: Sequence[int], bounds: Sequence[float]) -> float:
    """The ``q`` quantile of per-bucket ``counts`` (the last one: above every bound), as
    Prometheus's ``histogram_quantile`` computes it: linear inside the bucket; the highest
    bound if it falls above them all; NaN without samples."""
    total = sum(counts)
    if not total:
        return math.nan
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]  # pragma: no cover - the loop always returns for q <= 1


class Alerts(Protocol):
    """Where alerts go besides the log (Sentry by default)."""

    def active(self) -> bool:
        """True when an alert sent now would go somewhere."""

    def send(
        self,
        message: str,
        *,
        fingerprint: list[str],
        tags: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        """Send one alert."""


class SentryAlerts:
    """Alerts as Sentry events, when sentry-sdk is imported and initialised (checked at alert
    time, so ``sentry_sdk.init`` may come before or after the guard). sentry-sdk is never
    imported here; a failure is counted as an internal error of component ``sentry``."""

    def __init__(self, errors: InternalErrors, redactor: Redactor | None = None) -> None:
        self._errors = errors
        self._redactor = redactor

    def active(self) -> bool:
        sdk: Any = sys.modules.get("sentry_sdk")
        if sdk is None:
            return False
        try:
            return bool(sdk.get_client().is_active())
        except Exception as exc:
            self._errors.record("sentry", exc)
            return False

    def send(
        self,
        message: str,
        *,
        fingerprint: list[str],
        tags: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        try:
            from .integrations.sentry import capture_alert

            capture_alert(
                message,
                fingerprint=fingerprint,
                tags=tags,
                context=context,
                redactor=self._redactor,
            )
        except Exception as exc:
            self._errors.record("sentry", exc)


class _Route:
    """One watched route: its budget, class and ring of histograms."""

    __slots__ = (
        "announced",
        "breached",
        "budget",
        "budget_index",
        "counts",
        "custom",
        "ids",
        "locked",
        "low",
        "name",
        "next_event",
        "next_judge",
        "over_methods",
        "page",
        "slot",
        "slot_end",
        "slots",
    )

    def __init__(self, name: str, budget: float, custom: bool, next_judge: float) -> None:
        self.name = name
        self.budget = budget
        self.budget_index = 0
        self.custom = custom
        #: The class is settled (custom routes have none to find).
        self.locked = custom
        self.page = False
        #: Slot number of the current histogram, and the ring: slot numbers and histograms.
        self.slot = -1
        #: When the current slot ends, and the next rotation or judgment is due (clock time).
        self.slot_end = -math.inf
        self.next_event = -math.inf
        #: Below this duration a request is neither over budget nor slow (one comparison).
        self.low = budget
        self.counts: array[int] = array("I")
        self.ids = [-1] * SLOTS
        self.slots: list[array[int] | None] = [None] * SLOTS
        self.next_judge = next_judge
        self.breached = False
        #: The breach was logged (so its recovery is).
        self.announced = False
        #: Method -> requests over budget (names the method in the Sentry fingerprint).
        self.over_methods: dict[str, int] = {}

    @property
    def route_class(self) -> str:
        return "custom" if self.custom else "page" if self.page else "api"

    def top_method(self) -> str:
        methods = dict(self.over_methods)  # a copy: requests may add a method meanwhile
        if not methods:
            return "GET"
        return min(methods, key=lambda m: (-methods[m], m))


class BudgetWatch:
    """Watches every route's rolling p95 against its budget (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        metrics: RequestMetrics,
        errors: InternalErrors,
        *,
        redactor: Redactor | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.config = config
        #: Least seconds between two judgments of one route.
        self.judge_interval = JUDGE_INTERVAL
        self._bounds = watch_bounds(config)
        self._zeros = array("I", [0]) * (len(self._bounds) + 1)
        self._per_slot = SLOTS / config.budget_window
        self._min_samples = config.budget_min_samples
        self._slow = config.slow_request
        self._skip = frozenset((config.unmatched_route, OVERFLOW))
        self._max_routes = config.max_routes
        self._cooldown = Throttle(config.alert_cooldown)
        self._slow_log = Throttle(config.findings_log_interval)
        self._states: dict[str, _Route] = {}
        self._breached: set[_Route] = set()
        self._lock = threading.Lock()
        self._budget_gauge = metrics.route_budget
        self._breached_gauge = metrics.route_budget_breached
        self.alerts: Alerts = alerts if alerts is not None else SentryAlerts(errors, redactor)
        for route, seconds in config.route_budgets:  # known before any traffic
            if not _GLOB.intersection(route):
                self._budget_gauge.labels(route, "custom").set(seconds)

    # ------------------------------------------------------------------ per request

    def observe(
        self,
        exchange: Exchange,
        route: str,
        status: int,
        seconds: float,
        now: float,
        ledger: QueryLedger | None,
        findings: list[Finding],
    ) -> None:
        """Account one finished request (``now``: its end, a ``perf_counter`` reading)."""
        state = self._states.get(route)
        if state is None:
            state = self._admit(route, now)
            if state is None:
                return
        if not state.locked and exchange.headers is not None:
            self._classify(state, status, exchange.headers)
        if now >= state.next_event:
            self._tick(state, now)
        state.counts[bisect_left(self._bounds, seconds)] += 1
        if seconds >= state.low:
            if seconds > state.budget:
                methods = state.over_methods
                methods[exchange.method] = methods.get(exchange.method, 0) + 1
            if seconds >= self._slow:
                self._slow_request(exchange, route, seconds, now, ledger, findings)
        if findings:
            self._findings(exchange, route, now, ledger, findings)

    def record(self, route: str, method: str, seconds: float, now: float) -> None:
        """Account one request by its bare facts (tests and benchmarks drive the watch so)."""
        state = self._states.get(route) or self._admit(route, now)
        if state is None:
            return
        if now >= state.next_event:
            self._tick(state, now)
        state.counts[bisect_left(self._bounds, seconds)] += 1
        if seconds > state.budget:
            state.over_methods[method] = state.over_methods.get(method, 0) + 1

    def _tick(self, state: _Route, now: float) -> None:
        """A new slot began, or a judgment is due (then it runs before this request counts)."""
        if now >= state.slot_end:
            self._rotate(state, now)
        if now >= state.next_judge:
            self.judge(state.name, now)
        state.next_event = min(state.slot_end, state.next_judge)

    def _admit(self, route: str, now: float) -> _Route | None:
        if route in self._skip:
            return None
        with self._lock:
            state = self._states.get(route)
            if state is not None:
                return state
            if len(self._states) >= self._max_routes:
                return None
            budget, route_class = route_budget(self.config, route, page=False)
            state = _Route(route, budget, route_class == "custom", now + self.judge_interval)
            state.budget_index = self._bounds.index(budget)
            state.low = min(budget, self._slow)
            if state.locked:  # custom: known now; api/page once the class is
                self._budget_gauge.labels(route, route_class).set(budget)
            self._breached_gauge.labels(route).set(0)
            self._states[route] = state
        return state

    def _classify(self, state: _Route, status: int, headers: Any) -> None:
        """Settle the class on the route's first 2xx/3xx response (a series, once exported,
        never changes class: multiprocess gauges cannot remove one)."""
        if not 200 <= status < 400:
            return
        page = _html(headers) is True
        with self._lock:
            if state.locked:
                return
            state.locked = True
            state.page = page
            budget, route_class = route_budget(self.config, state.name, page=page)
            state.budget = budget
            state.budget_index = self._bounds.index(budget)
            state.low = min(budget, self._slow)
            self._budget_gauge.labels(state.name, route_class).set(budget)

    def _rotate(self, state: _Route, now: float) -> None:
        slot = int(now * self._per_slot)
        index = slot % SLOTS
        with self._lock:
            counts = state.slots[index]
            if counts is None:
                counts = state.slots[index] = array("I", self._zeros)
            elif state.ids[index] != slot:
                counts[:] = self._zeros
            state.ids[index] = slot
            state.counts = counts
            state.slot = slot
            state.slot_end = (slot + 1) / self._per_slot

    # ------------------------------------------------------------------ judgment

    def window(self, route: str, now: float) -> list[int]:
        """The route's per-bucket counts over the window ending at ``now`` (empty if unknown)."""
        state = self._states.get(route)
        if state is None:
            return []
        current = int(now * self._per_slot)
        with self._lock:
            live = [
                counts
                for slot, counts in zip(state.ids, state.slots, strict=True)
                if counts is not None and current - SLOTS < slot <= current
            ]
            if not live:
                return [0] * len(self._zeros)
            return [sum(column) for column in zip(*live, strict=True)]

    def p95(self, route: str, now: float) -> tuple[float, int]:
        """(estimated p95 in seconds, requests) of ``route`` over the window ending at ``now``."""
        counts = self.window(route, now)
        return histogram_quantile(QUANTILE, counts, self._bounds), sum(counts)

    def judge(self, route: str, now: float) -> None:
        """Judge ``route`` now (requests call this at most once per ``judge_interval``)."""
        state = self._states.get(route)
        if state is None:
            return
        with self._lock:
            if now < state.next_judge:
                return  # another thread is judging it
            state.next_judge = now + self.judge_interval
        counts = self.window(route, now)
        current = int(now * self._per_slot)
        with self._lock:  # breached routes that saw no request for a whole window
            stale = [o for o in self._breached if o is not state and o.slot <= current - SLOTS]
        for other in stale:
            self._recover(other, math.nan, 0, now)
        total = sum(counts)
        if total < self._min_samples:
            return
        p95 = histogram_quantile(QUANTILE, counts, self._bounds)
        within = sum(counts[: state.budget_index + 1])
        if within < QUANTILE * total:
            self._breach(state, p95, total, now)
        elif state.breached:
            self._recover(state, p95, total, now)

    def _breach(self, state: _Route, p95: float, samples: int, now: float) -> None:
        with self._lock:
            newly = not state.breached
            state.breached = True
            self._breached.add(state)
        if newly:
            self._breached_gauge.labels(state.name).set(1)
        if not self._cooldown.allow(("slow-endpoint", state.name), now):
            return
        state.announced = True
        method, route = state.top_method(), state.name
        facts = {
            "route": route,
            "method": method,
            "p95_ms": round(p95 * 1000, 1),
            "budget_ms": round(state.budget * 1000, 1),
            "samples": samples,
            "route_class": state.route_class,
            "window_s": self.config.budget_window,
        }
        message = (
            f"launchguard slow endpoint {method} {route}: p95 {facts['p95_ms']:.0f} ms over its "
            f"{facts['budget_ms']:.0f} ms budget ({samples} requests in the last "
            f"{self.config.budget_window:.0f} s)"
        )
        logger.warning(message, extra={"event_kind": "route_budget_breached", **facts})
        if self.alerts.active():
            self.alerts.send(
                message,
                fingerprint=["launchguard", "slow-endpoint", method, route],
                tags={
                    "route": route,
                    "http.method": method,
                    "route_class": state.route_class,
                    "launchguard.alert": "slow-endpoint",
                },
                context=facts,
            )

    def _recover(self, state: _Route, p95: float, samples: int, now: float) -> None:
        with self._lock:
            if not state.breached:
                return
            state.breached = False
            self._breached.discard(state)
            announced, state.announced = state.announced, False
        self._breached_gauge.labels(state.name).set(0)
        if not announced:
            return
        why = (
            f"p95 {p95 * 1000:.0f} ms within its {state.budget * 1000:.0f} ms budget"
            if samples
            else "no requests in the window"
        )
        logger.info(
            "launchguard route %s back within budget: %s",
            state.name,
            why,
            extra={
                "event_kind": "route_budget_recovered",
                "route": state.name,
                "p95_ms": None if math.isnan(p95) else round(p95 * 1000, 1),
                "budget_ms": round(state.budget * 1000, 1),
                "samples": samples,
            },
        )

    # ------------------------------------------------------------------ single requests

    def _slow_request(
        self,
        exchange: Exchange,
        route: str,
        seconds: float,
        now: float,
        ledger: QueryLedger | None,
        findings: list[Finding],
    ) -> None:
        if not self._slow_log.allow(route, now):
            return
        facts: dict[str, Any] = {
            "event_kind": "slow_request",
            "route": route,
            "method": exchange.method,
            "duration_ms": round(seconds * 1000, 1),
            "slow_ms": round(self._slow * 1000, 1),
        }
        if exchange.request_id:
            facts["request_id"] = exchange.request_id
        breakdown = ""
        if ledger is not None:
            facts["db_queries"] = ledger.count
            facts["db_ms"] = round(ledger.seconds * 1000, 1)
            facts["top_queries"] = [
                {"sql": sql, "count": count, "db_ms": round(spent * 1000, 1)}
                for sql, count, spent in ledger.shapes()[:TOP_SHAPES]
            ]
            breakdown = f"; {ledger.count} queries, {facts['db_ms']:.1f} ms in the database"
        if findings:
            facts["findings"] = [
                {"kind": f.kind, "fingerprint": f.fingerprint, "count": f.count, "sql": f.sql}
                for f in findings
            ]
            kinds = sorted({f.kind for f in findings})
            breakdown += f"; findings: {', '.join(kinds)}"
        logger.warning(
            "launchguard slow request %s %s: %.0f ms%s",
            exchange.method,
            route,
            seconds * 1000,
            breakdown,
            extra=facts,
        )

    def _findings(
        self,
        exchange: Exchange,
        route: str,
        now: float,
        ledger: QueryLedger | None,
        findings: list[Finding],
    ) -> None:
        alerts = self.alerts
        for finding in findings:
            if finding.kind != "n_plus_one":
                continue
            if not alerts.active():
                return
            if not self._cooldown.allow(("n-plus-one", route, finding.fingerprint), now):
                continue
            where = f" at {finding.call_site}" if finding.call_site else ""
            tags = {"route": route, "launchguard.alert": "n-plus-one"}
            if exchange.request_id:
                tags["request_id"] = exchange.request_id
            if ledger is not None:
                tags["db_queries"] = str(ledger.count)
            alerts.send(
                f"launchguard N+1 queries on {route}: {finding.count} x {finding.sql}{where}",
                fingerprint=["launchguard", "n-plus-one", route, finding.fingerprint],
                tags=tags,
                context=finding.as_dict(),
            )

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        return len(self._states)

    def breached(self) -> list[str]:
        """The routes over budget now."""
        with self._lock:
            return sorted(state.name for state in self._breached)


def _html(headers: Any) -> bool | None:
    """True for ``text/html``, False for another ``Content-Type``, None without one. ASGI
    headers are (bytes, bytes) pairs, WSGI ones (str, str); names in any case."""
    for name, value in headers:
        if type(name) is bytes:
            if name.lower() == b"content-type":
                return bytes(value).lstrip()[:9].lower() == b"text/html"
        elif name.lower() == "content-type":
            return str(value).lstrip()[:9].lower() == "text/html"
    return None
