"""Where responses are linted on live traffic: the rules of :mod:`launchguard.lint`, per route,
at the cost of a dict lookup on a steady route.

Per request the middleware builds a *fast key* from what the rules depend on: the status, the
method, whether the request came over HTTPS (through trusted proxies) and carried
``Authorization`` or ``Cookie``, the URL's file-extension class, the values of the response
headers that stay the same from one response to the next (``Cache-Control``, ``Vary``,
``Content-Type``, ``Strict-Transport-Security``...) and only the *presence* of those that
change per response (``Set-Cookie``, ``Expires``, ``ETag``, ``Last-Modified``,
``Content-Security-Policy`` with its nonces). The key is looked up in the route's verdict
cache; only a miss runs the rules. Two guarantees keep that honest:

- a cached verdict is re-checked after ``revalidate`` seconds (60 by default), so a change the
  fast key cannot see (a cookie that lost ``Secure``) shows within that time;
- each route keeps at most ``max_shapes`` keys (oldest dropped first), whatever the traffic.

What a finding does: it counts in ``launchguard_http_lint_findings_total{http_route,rule}``
(once per response that has it), is logged as a structured warning once per (route, rule) per
interval on the ``launchguard.lint`` logger, is raised as a :class:`CacheHeaderWarning` or
:class:`SecurityHeaderWarning` when the guard has ``warn_findings=True``, and appears in the
report of :meth:`HeaderLinter.report` (``guard.findings()``) with counts, first and last seen,
and one example response with its secrets masked.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._throttle import Throttle
from .lint import RULES, Finding, ResponseFacts, _extension, _lint_shape, _shape

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.metrics_core import Metric

    from .redact import Redactor
    from .timing import Exchange

__all__ = [
    "FLAG_AUTHORIZATION",
    "FLAG_COOKIE",
    "FLAG_HTTPS",
    "HeaderLinter",
    "TrustedPeers",
    "forwarded_https",
    "request_flags",
]

LINT_FINDINGS = "launchguard_http_lint_findings"
_HELP = "Responses with a header-lint finding, by route and rule."

#: ``Exchange.flags`` bits: the request facts the rules read.
FLAG_AUTHORIZATION = 1
FLAG_COOKIE = 2
FLAG_HTTPS = 4

_logger = logging.getLogger("launchguard.lint")

# Headers whose value goes into the fast key, and headers whose presence does (their values
# change per response: cookie values, dates, validators, CSP nonces).
_STABLE = (
    "cache-control",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
    "pragma",
    "vary",
    "content-type",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
)
_PRESENCE = ("expires", "etag", "last-modified", "set-cookie", "content-security-policy")
#: Header name (lower case) -> code: odd codes keep the value, even codes only the name.
_CODES: dict[str, int] = {
    **{name: 2 * i + 3 for i, name in enumerate(_STABLE)},
    **{name: 2 * i + 2 * len(_STABLE) + 4 for i, name in enumerate(_PRESENCE)},
}
_MAX_NAMES = 4096
_MAX_EXTENSIONS = 4096
_MAX_VERDICTS = 4096
#: Bytes of header values a cache key may hold.
_MAX_KEY = 8192
_NO_EXTENSION = ("", False)


class _Entry:
    """One cached verdict: the findings, and how often (and when last) responses had them."""

    __slots__ = ("children", "findings", "folded", "last", "rules", "tick", "until")

    def __init__(self, findings: tuple[Finding, ...], until: float) -> None:
        self.findings = findings
        #: Each rule once, however many cookies (say) it fired for.
        self.rules = tuple(dict.fromkeys(f.rule.id for f in findings))
        self.until = until
        #: ``next(tick)`` counts a hit: one C call, atomic under the GIL, so the steady
        #: path takes no lock (a lock was an eighth of its cost). Read with :attr:`hits`.
        self.tick = itertools.count()
        self.last = 0.0
        self.children: tuple[Any, ...] = ()
        #: Once the entry is retired (replaced or evicted): the hits folded into the report's
        #: totals; -1 while it is live. A hit counted by a thread that found the entry just
        #: before it was retired is folded late (see :meth:`HeaderLinter._fold_late`).
        self.folded = -1

    @property
    def hits(self) -> int:
        """Responses counted so far (``count(n)`` is the counter's repr)."""
        return int(repr(self.tick)[6:-1])


class _Seen:
    """The report's memory of one (route, rule): first seen, retired hits, one example."""

    __slots__ = ("detail", "example", "first", "retired", "retired_last")

    def __init__(self, first: float, detail: str, example: dict[str, Any]) -> None:
        self.first = first
        self.detail = detail
        self.example = example
        self.retired = 0  # hits of evicted or replaced cache entries
        self.retired_last = 0.0


class TrustedPeers:
    """Is a peer address one of the trusted proxies? Answers cached (bounded)."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self._known: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, peer: object) -> bool:
        if not isinstance(peer, str):
            return False
        known = self._known.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer.split("%", 1)[0])
            except ValueError:
                known = False
            else:
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                    address = address.ipv4_mapped
                known = any(address in network for network in self._networks)
            if len(self._known) >= 1024:
                self._known.clear()
            self._known[peer] = known
        return known


def forwarded_https(value: str | bytes) -> bool:
    """Whether an ``X-Forwarded-Proto`` value (its first item) says ``https``."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.partition(",")[0].strip().lower() == "https"


def request_flags(environ: Mapping[str, Any], trusted: TrustedPeers) -> int:
    """The ``FLAG_*`` bits of a WSGI request (``environ``, or Django's ``request.META``)."""
    flags = 0
    if "HTTP_AUTHORIZATION" in environ:
        flags |= FLAG_AUTHORIZATION
    if "HTTP_COOKIE" in environ:
        flags |= FLAG_COOKIE
    proto = environ.get("HTTP_X_FORWARDED_PROTO") if trusted else None
    if proto is not None and environ.get("REMOTE_ADDR") in trusted:
        if forwarded_https(proto):
            flags |= FLAG_HTTPS
    elif environ.get("wsgi.url_scheme") == "https":
        flags |= FLAG_HTTPS
    return flags


class HeaderLinter:
    """The middleware's header linter (see the module docstring)."""

    def __init__(
        self,
        *,
        cdn: str = "cloudflare",
        ignore: Iterable[str] = (),
        log_interval: float = 300.0,
        redactor: Redactor | None = None,
        registry: CollectorRegistry | None = None,
        revalidate: float = 60.0,
        max_shapes: int = 32,
        max_routes: int = 10_000,
    ) -> None:
        self.cdn = cdn
        self._ignore = frozenset(ignore)
        self._revalidate = revalidate
        self._max_shapes = max_shapes
        self._max_routes = max_routes
        self._redactor = redactor
        self._throttle = Throttle(log_interval)
        self._lock = threading.Lock()
        #: Header name as the app spelled it (bytes or str, any case) -> code (0: irrelevant).
        self._codes: dict[object, int] = {}
        self._extensions: dict[str, tuple[str, bool]] = {}
        self._verdicts: dict[tuple[object, ...], tuple[Finding, ...]] = {}
        self._routes: dict[str, dict[tuple[object, ...], _Entry]] = {}
        self._seen: dict[str, dict[str, _Seen]] = {}
        self._wall = time.time() - perf_counter()  # perf_counter() + _wall = time.time()
        self._counter = _counter_for(registry, self)

    # -- per request -------------------------------------------------------------------------

    def observe(self, exchange: Exchange, route: str, now: float) -> tuple[Finding, ...]:
        """The findings of ``exchange``'s response (cached per route); counts them.

        ``now`` is a ``perf_counter()`` reading. Returns () if no response started.
        """
        headers = exchange.headers
        if headers is None:
            return ()
        path = exchange.path
        dot = path.rfind(".")
        ext = _NO_EXTENSION if dot < 0 or dot < path.rfind("/") else self._extension(path)
        codes = self._codes
        parts: list[object] = [exchange.status, exchange.method, exchange.flags, ext]
        for name, value in headers:
            code = codes.get(name)
            if code is None:
                code = self._learn(name)
            if code:
                parts.append(code)
                if code & 1:
                    parts.append(value)
        shapes = self._routes.get(route)
        if shapes is not None:
            entry = shapes.get(tuple(parts))
            if entry is not None and now < entry.until:
                if entry.rules:
                    if entry.children:
                        for child in entry.children:
                            child.inc()
                    next(entry.tick)
                    entry.last = now
                    if entry.folded >= 0:  # retired by another thread since we found it
                        self._fold_late(route, entry)
                return entry.findings
        return self._lint(exchange, route, tuple(parts), now)

    def _learn(self, name: object) -> int:
        try:
            text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        except Exception:  # an object that is neither bytes nor printable
            return 0
        code = _CODES.get(text.lower(), 0)
        if len(self._codes) < _MAX_NAMES:
            self._codes[name] = code
        return code

    def _extension(self, path: str) -> tuple[str, bool]:
        segment = path[path.rfind("/") + 1 :]
        found = self._extensions.get(segment)
        if found is None:
            found = _extension(segment)
            if found == _NO_EXTENSION:
                found = _NO_EXTENSION
            if len(self._extensions) >= _MAX_EXTENSIONS:
                self._extensions.clear()
            self._extensions[segment] = found
        return found

    # -- a cache miss ------------------------------------------------------------------------

    def _lint(
        self, exchange: Exchange, route: str, key: tuple[object, ...], now: float
    ) -> tuple[Finding, ...]:
        facts = _facts(exchange)
        shape = _shape(facts)
        # A key holding a huge header value is never kept: linted each time, memory bounded.
        cacheable = sum(len(part) for part in key if isinstance(part, (bytes, str))) <= _MAX_KEY
        findings = self._verdicts.get(shape) if cacheable else None
        if findings is None:
            findings = tuple(
                f for f in _lint_shape(shape, self.cdn) if f.rule.id not in self._ignore
            )
            if cacheable:
                if len(self._verdicts) >= _MAX_VERDICTS:
                    self._verdicts.clear()
                self._verdicts[shape] = findings
        entry = _Entry(findings, now + self._revalidate)
        if self._counter is not None and entry.rules:  # before it is published: another
            # thread may count a hit on it as soon as it is in _routes
            entry.children = tuple(self._counter.labels(route, rule) for rule in entry.rules)
        with self._lock:
            seen = self._seen.get(route)
            if seen is None and len(self._seen) < self._max_routes:
                seen = self._seen[route] = {}
            if seen is not None:  # else: far past max_routes, linted but not remembered
                for finding in findings:
                    if finding.rule.id not in seen:
                        seen[finding.rule.id] = _Seen(
                            now, finding.detail, self._example(exchange, facts)
                        )
                if cacheable:
                    shapes = self._routes.setdefault(route, {})
                    old = shapes.pop(key, None)
                    if old is not None:
                        self._retire(route, old)
                    elif len(shapes) >= self._max_shapes:
                        self._retire(route, shapes.pop(next(iter(shapes))))
                    shapes[key] = entry
                    if entry.rules:
                        next(entry.tick)
                    entry.last = now
                else:
                    for rule in entry.rules:
                        seen[rule].retired += 1
                        seen[rule].retired_last = now
        for child in entry.children:
            child.inc()
        for finding in findings:
            if self._throttle.allow((route, finding.rule.id)):
                _logger.warning(
                    "launchguard header lint on %s: %s (%s): %s",
                    route,
                    finding.rule.id,
                    finding.detail,
                    finding.rule.message,
                    extra={"launchguard_lint": as_dict(route, finding)},
                )
        return findings

    def _retire(self, route: str, entry: _Entry) -> None:
        """Fold an entry's hits into the report's totals (under the lock)."""
        entry.folded = 0  # retired from here on: a hit counted after the read below folds late
        hits = entry.hits
        entry.folded = hits
        self._add_retired(route, entry, hits)

    def _fold_late(self, route: str, entry: _Entry) -> None:
        """Fold the hits a retired entry got after :meth:`_retire` folded it."""
        with self._lock:
            hits = entry.hits
            late = hits - entry.folded
            entry.folded = hits
            self._add_retired(route, entry, late)

    def _add_retired(self, route: str, entry: _Entry, hits: int) -> None:
        if hits <= 0:
            return
        seen = self._seen.get(route, {})
        for rule in entry.rules:
            record = seen.get(rule)
            if record is not None:
                record.retired += hits
                record.retired_last = max(record.retired_last, entry.last)

    def _example(self, exchange: Exchange, facts: ResponseFacts) -> dict[str, Any]:
        """The response as the report shows it: relevant headers only, secrets masked."""
        redact = self._redactor.redact_text if self._redactor is not None else _mask_all
        path = redact(exchange.path[:512])
        if exchange.query:
            path += "?" + redact(exchange.query[:512])
        headers: list[list[str]] = []
        for name, value in facts.headers:
            if name.lower() == "set-cookie":
                cookie_name, _, rest = value.partition("=")
                attributes = rest.partition(";")[2]
                value = f"{cookie_name[:64]}=[REDACTED]" + (f";{attributes}" if attributes else "")
            headers.append([name, redact(value[:512])])
        return {
            "method": exchange.method,
            "path": path,
            "status": exchange.status,
            "https": bool(exchange.flags & FLAG_HTTPS),
            "headers": headers,
        }

    # -- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, str], int]:
        """Responses with each (route, rule) so far (the counter's values)."""
        return _tally(self._lock, self._seen, self._routes)

    def report(self) -> dict[str, Any]:
        """Per route, the rules hit: counts, first and last seen (UTC ISO 8601), one example.

        JSON-serialisable; no header value appears unmasked.
        """
        counts = self.counts()
        last: dict[tuple[str, str], float] = {}
        with self._lock:
            for route, shapes in self._routes.items():
                for entry in shapes.values():
                    for rule in entry.rules:
                        if entry.last > last.get((route, rule), 0.0):
                            last[(route, rule)] = entry.last
            seen = {route: dict(rules) for route, rules in self._seen.items()}
        routes: dict[str, Any] = {}
        for route in sorted(seen):
            rules = []
            for rule_id, record in seen[route].items():
                spec = RULES[rule_id]
                final = max(last.get((route, rule_id), 0.0), record.retired_last, record.first)
                rules.append(
                    {
                        "rule": rule_id,
                        "category": spec.category,
                        "severity": spec.severity,
                        "message": spec.message,
                        "detail": record.detail,
                        "count": counts.get((route, rule_id), 0),
                        "first_seen": self._iso(record.first),
                        "last_seen": self._iso(final),
                        "why": spec.why,
                        "fix": dict(spec.fix),
                        "example": record.example,
                    }
                )
            rules.sort(key=lambda r: (_SEVERITY_ORDER[str(r["severity"])], str(r["rule"])))
            routes[route] = rules
        return {"cdn": self.cdn, "routes": routes}

    def _iso(self, reading: float) -> str:
        stamp = time.gmtime(reading + self._wall)
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp)


_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def as_dict(route: str, finding: Finding) -> dict[str, Any]:
    """A finding as a log line's structured field."""
    rule = finding.rule
    return {
        "route": route,
        "rule": rule.id,
        "category": rule.category,
        "severity": rule.severity,
        "message": rule.message,
        "detail": finding.detail,
    }


def warn_about(route: str, findings: Sequence[Finding]) -> None:
    """Raise ``findings`` as :class:`CacheHeaderWarning` / :class:`SecurityHeaderWarning`."""
    import warnings

    from .warnings import CacheHeaderWarning, SecurityHeaderWarning

    for finding in findings:
        rule = finding.rule
        category = SecurityHeaderWarning if rule.category == "security" else CacheHeaderWarning
        warnings.warn(
            f"launchguard {rule.id} on {route} ({finding.detail}): {rule.message}",
            category,
            stacklevel=3,
        )


def _mask_all(text: str) -> str:
    return "[REDACTED]"


def _facts(exchange: Exchange) -> ResponseFacts:
    headers: list[tuple[str, str]] = []
    for item in exchange.headers or ():
        try:
            name, value = item
            if isinstance(name, bytes):
                name = name.decode("latin-1")
            if isinstance(value, bytes):
                value = value.decode("latin-1")
        except Exception:  # noqa: S112 - a malformed pair: the server rejects it; nothing to lint
            continue
        if str(name).lower() in _CODES:
            headers.append((str(name), str(value)))
    flags = exchange.flags
    return ResponseFacts(
        method=exchange.method,
        status=exchange.status,
        scheme="https" if flags & FLAG_HTTPS else "http",
        path=exchange.path,
        request_has_authorization=bool(flags & FLAG_AUTHORIZATION),
        request_has_cookie=bool(flags & FLAG_COOKIE),
        headers=tuple(headers),
    )


def _tally(
    lock: threading.Lock,
    seen_by_route: dict[str, dict[str, _Seen]],
    routes: dict[str, dict[tuple[object, ...], _Entry]],
) -> dict[tuple[str, str], int]:
    """A linter's counts, from its state alone (so they survive the linter, see ``_Counts``)."""
    totals: dict[tuple[str, str], int] = {}
    with lock:
        for route, seen in seen_by_route.items():
            for rule, record in seen.items():
                if record.retired:
                    totals[(route, rule)] = record.retired
        for route, shapes in routes.items():
            for entry in shapes.values():
                if entry.hits:
                    for rule in entry.rules:
                        totals[(route, rule)] = totals.get((route, rule), 0) + entry.hits
    return totals


# -- the counter family, shared by every linter of a registry -----------------------------------


_State = tuple[
    threading.Lock,
    dict[str, dict[str, _Seen]],
    dict[str, dict[tuple[object, ...], _Entry]],
]


class _Counts:
    """``launchguard_http_lint_findings_total`` read from the linters' caches at scrape time.

    A counter never goes down: when a linter is garbage collected (a guard replaced in tests
    or on reload) its counts are folded into ``retired`` and keep being reported. The family
    holds each linter's state, not the linter, so folding and reading are one atomic step.
    """

    def __init__(self) -> None:
        self.live: dict[int, _State] = {}
        self.retired: dict[tuple[str, str], int] = {}
        #: Keys of collected linters. A finalizer may run inside any allocation, even one
        #: made under ``_lock``, so it only appends here; ``_settle`` does the folding.
        self.dead: list[int] = []
        self._lock = threading.Lock()

    def add(self, linter: HeaderLinter) -> None:
        key = id(linter)
        with self._lock:
            self._settle()
            self.live[key] = (linter._lock, linter._seen, linter._routes)
        weakref.finalize(linter, self.dead.append, key)

    def _settle(self) -> None:
        """Fold collected linters' counts into ``retired`` (under ``_lock``)."""
        while self.dead:
            state = self.live.pop(self.dead.pop(), None)
            if state is not None:
                for count_key, value in _tally(*state).items():
                    self.retired[count_key] = self.retired.get(count_key, 0) + value

    def describe(self) -> list[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily

        return [CounterMetricFamily(LINT_FINDINGS, _HELP, labels=("http_route", "rule"))]

    def collect(self) -> list[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily

        with self._lock:
            self._settle()
            totals = dict(self.retired)
            for state in self.live.values():
                for key, value in _tally(*state).items():
                    totals[key] = totals.get(key, 0) + value
        family = CounterMetricFamily(LINT_FINDINGS, _HELP, labels=("http_route", "rule"))
        for (route, rule), value in sorted(totals.items()):
            family.add_metric([route, rule], value)
        return [family]


_families: weakref.WeakKeyDictionary[CollectorRegistry, Any] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _counter_for(registry: CollectorRegistry | None, linter: HeaderLinter) -> Counter | None:
    """Register ``linter`` with its registry's family: a scrape-time collector, or (under
    several worker processes, where values must live in shared files) a real ``Counter``,
    which is returned so that the linter increments it per response."""
    from prometheus_client import REGISTRY, Counter

    from .metrics import multiprocess_dir

    registry = REGISTRY if registry is None else registry
    with _families_lock:
        family = _families.get(registry)
        if multiprocess_dir():
            if not isinstance(family, Counter):
                family = Counter(LINT_FINDINGS, _HELP, ("http_route", "rule"), registry=registry)
                _families[registry] = family
            return family
        if not isinstance(family, _Counts):
            family = _Counts()
            registry.register(family)
            _families[registry] = family
        family.add(linter)
        return None
