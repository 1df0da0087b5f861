"""The access log: one structured line per request, secrets masked.

Each finished request is logged on the structlog logger ``launchguard.access`` as event
``request`` with: ``method``, ``route``, ``path`` (query string included, secrets masked),
``status``, ``duration_ms``, ``db_queries``, ``db_ms``, ``request_id``, ``trace_id`` and
``span_id`` (when OpenTelemetry is active), ``release``, ``error_type`` (on errors), and
``client_ip`` only when the direct peer is a configured trusted proxy (then the first untrusted
address of ``X-Forwarded-For``, read from the right). Errors log at ``error``, slow requests at
``warning``, the rest at ``info``; fast successful requests can be sampled
(``access_log_sample``), errors and slow requests never are.

``launchguard.logging.configure()`` renders these lines as JSON (or readable text on a
terminal), through the same handlers as stdlib logging. With that setup the line is written
straight to its handler (:class:`launchguard.logging.DirectOutput`: the same bytes, about a
tenth of the cost); with any other logging setup it goes through structlog as usual.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import sys
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any

import structlog

from . import logging as _logging
from .context import request_id_var, trace_ids
from .logging import DirectOutput, iso_second

if TYPE_CHECKING:
    from ._config import Config
    from .queries import QueryLedger
    from .redact import Redactor
    from .timing import Exchange

__all__ = ["AccessLog", "client_ip"]

#: Every key an access-log line can have, and its constant values (for DirectOutput.plain).
_KEYS = (
    "method", "route", "path", "status", "duration_ms", "request_id", "db_queries", "db_ms",
    "error_type", "release", "trace_id", "span_id", "client_ip", "event", "logger", "level",
    "timestamp",
)  # fmt: skip
_LEVEL_NAMES = ("info", "warning", "error")
#: The query fields of a request without statements.
_NO_STATEMENTS = ', "db_queries": 0, "db_ms": 0.0'
_loaded = sys.modules.get


#: The heads of a method with none remembered yet (never changed).
_NO_HEADS: dict[str, str] = {}


class _NotPlain(Exception):
    """A value of the line needs the real processors (raised only off the common path)."""


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _json(direct: DirectOutput, value: str) -> str:
    """``value`` as the JSON string ``direct`` would write; _NotPlain if the redactor would
    change it."""
    encoded = direct.json_strings.get(value) or direct.jsonable(value)
    if encoded is None:
        raise _NotPlain
    return encoded


def _milliseconds(seconds: float) -> float:
    """``seconds`` in milliseconds to three decimals (``round(seconds * 1000, 3)``, three
    times faster); infinities and NaN stay as they are."""
    try:
        return round(seconds * 1_000_000) / 1000
    except (OverflowError, ValueError):
        return seconds * 1000


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: tuple[_Network, ...]
) -> str | None:
    """The client address, if ``peer`` is a trusted proxy: the rightmost untrusted hop."""
    if not trusted or not peer or not _trusted(peer, trusted):
        return None
    if not forwarded_for:
        return None
    hops = [hop.strip() for hop in forwarded_for.split(",")][-20:]
    for hop in reversed(hops):
        if not _parse(hop):
            return None  # a malformed hop: trust nothing further left
        if not _trusted(hop, trusted):
            return hop
    return None


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(value: str, trusted: tuple[_Network, ...]) -> bool:
    address = _parse(value)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


class AccessLog:
    """Writes the access-log line of each request (see the module docstring)."""

    def __init__(self, config: Config, redactor: Redactor) -> None:
        self._logger = structlog.get_logger("launchguard.access")
        self._stdlib = logging.getLogger("launchguard.access")
        #: The DirectOutput whose check of our keys and constants passed (it cannot change),
        #: and the line's constant parts made for it (see _plain).
        self._checked: DirectOutput | None = None
        #: method -> route -> the line's start (two lookups, no key tuple per line).
        self._heads: dict[str, dict[str, str]] = {}
        self._release_json = ""
        self._tails: tuple[str, ...] = ()
        self._hex_plain = False
        #: The second the last line fell in: its first microsecond and ISO text.
        self._second: tuple[int, str] = (-(10**7), "")
        #: Paths without a query string that the redactor leaves unchanged (a bounded cache).
        self._clean_paths: set[str] = set()
        self._sample = config.access_log_sample
        self._slow = config.slow_request
        self._release = config.release or None
        self._redact = redactor.redact_text
        self._trusted: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in config.trusted_proxies
        )

    def log(
        self,
        exchange: Exchange,
        route: str,
        status: int,
        error_type: str,
        seconds: float,
        ledger: QueryLedger | None,
    ) -> None:
        """Log one finished request (unless sampled out)."""
        if type(status) is not int:
            status = int(status)
        if status >= 500 or error_type:
            level, levelno = 2, logging.ERROR
        elif seconds >= self._slow:
            level, levelno = 1, logging.WARNING
        else:
            if self._sample < 1.0 and random.random() >= self._sample:
                return
            level, levelno = 0, logging.INFO
        query = exchange.query
        path = exchange.path
        if query:
            path = self._redact(f"{path}?{query}"[:2048])
        elif path not in self._clean_paths:
            path = self._masked_path(path)
        if type(route) is not str:
            route = str(route)
        finite = True  # round() raises for inf and NaN, and gives a finite float otherwise
        try:
            duration_ms = round(seconds * 1_000_000) / 1000  # _milliseconds(), inline
        except (OverflowError, ValueError):
            duration_ms = seconds * 1000
            finite = False
        # The request's span, taken when it arrived: a WSGI body may be closed in another
        # context than the one the request started in.
        span = exchange.span
        ids = trace_ids(span) if span is not None or _loaded("opentelemetry.trace") else None
        ip = None
        if self._trusted:
            ip = client_ip(exchange.client, exchange.forwarded_for, self._trusted)
        direct = _logging._direct
        ready = False if direct is None else direct.ready(self._stdlib, levelno, True)
        if ready is None:
            return  # below the logger's level
        if direct is not None and ready and (direct is self._checked or self._plain(direct)):
            # The line these fields give through structlog and configure()'s JSON renderer, key
            # for key (DirectOutput.ready's plain_json); _NotPlain when a value needs the real
            # processors (the redactor would change it, or a float is not finite). Written
            # here rather than in a method of its own: a call per request costs.
            try:
                head = self._heads.get(exchange.method, _NO_HEADS).get(route) or self._head(
                    direct, exchange.method, route
                )
                path_json = direct.json_strings.get(path) or direct.jsonable(path)
                if head is None or path_json is None or not finite:
                    raise _NotPlain
                request_id = exchange.request_id
                rid = db = extra = ""
                if request_id:
                    if exchange.request_id_made and self._hex_plain:  # hex: nothing to mask
                        rid = f', "request_id": "{request_id}"'
                    else:
                        rid = f', "request_id": {_json(direct, request_id)}'
                if ledger is not None:
                    count = ledger.count
                    db_seconds = ledger.seconds
                    if count == 0 and db_seconds == 0.0 and type(count) is int:
                        db = _NO_STATEMENTS  # (a float's repr costs as much as the rest here)
                    else:
                        try:
                            db_ms = round(db_seconds * 1_000_000) / 1000  # _milliseconds(), inline
                        except (OverflowError, ValueError):
                            raise _NotPlain from None  # not finite: the real renderer writes it
                        if type(count) is not int:
                            raise _NotPlain
                        db = f', "db_queries": {count}, "db_ms": {db_ms!r}'
                if error_type:
                    extra = f', "error_type": {_json(direct, error_type)}'
                extra += self._release_json
                if ids is not None:
                    trace, span = _json(direct, ids[0]), _json(direct, ids[1])
                    extra += f', "trace_id": {trace}, "span_id": {span}'
                if ip is not None:
                    extra += f', "client_ip": {_json(direct, ip)}'
                micros = _time_ns() // 1000  # the timestamp: DirectOutput.timestamp(), inline
                second = self._second
                if not second[0] <= micros < second[0] + 1_000_000:
                    second = self._second = (
                        micros - micros % 1_000_000,
                        iso_second(micros // 1_000_000),
                    )
                fraction = str(micros)[-6:]  # the microseconds, zero-padded
                if not self._hex_plain:  # a redactor whose rules could match a timestamp
                    timestamp = _json(direct, direct.timestamp())
                elif fraction == "000000":
                    timestamp = f'"{second[1]}Z"'
                else:
                    timestamp = f'"{second[1]}.{fraction}Z"'
                if not request_id:
                    context_id = request_id_var.get()
                    if context_id is not None:
                        timestamp += f', "request_id": {_json(direct, context_id)}'
                line = (
                    f'{head}{path_json}, "status": {status}, "duration_ms": {duration_ms!r}'
                    f"{rid}{db}{extra}{self._tails[level]}{timestamp}}}"
                )
            except _NotPlain:
                pass
            else:
                direct.emit(self._stdlib, levelno, line)
                return
        if direct is not None and not ready:  # not plain JSON, or not ready at all
            ready = direct.ready(self._stdlib, levelno)
        method = _LEVEL_NAMES[level]
        fields: dict[str, Any] = {
            "method": exchange.method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        }
        if exchange.request_id:
            fields["request_id"] = exchange.request_id
        if ledger is not None:
            fields["db_queries"] = ledger.count
            fields["db_ms"] = _milliseconds(ledger.seconds)
        if error_type:
            fields["error_type"] = error_type
        if self._release:
            fields["release"] = self._release
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
        if ip is not None:
            fields["client_ip"] = ip
        if (
            ready
            and direct is not None
            and direct.write(self._stdlib, method, "request", fields, traced=True)
        ):
            return
        getattr(self._logger, method)("request", **fields)

    def _plain(self, direct: DirectOutput) -> bool:
        """Whether ``direct``'s redactor masks none of our keys and constant values (the
        answer does not change for a ``DirectOutput``); then the line's constant parts are
        made for it."""
        release = self._release
        if not direct.plain(_KEYS, ("request", self._stdlib.name, *_LEVEL_NAMES, release or "")):
            return False
        self._heads.clear()
        self._release_json = f', "release": {direct.jsonable(release)}' if release else ""
        logger = json.dumps(self._stdlib.name)
        self._tails = tuple(
            f', "event": "request", "logger": {logger}, "level": "{name}", "timestamp": '
            for name in _LEVEL_NAMES
        )
        self._hex_plain = direct.leaves_safe_alphabet()
        self._checked = direct
        return True

    def _head(self, direct: DirectOutput, method: str, route: str) -> str | None:
        """The line's start up to the path's value, for ``method`` and ``route`` (remembered:
        a bounded map, as both are bounded labels), or None if the redactor would change one."""
        method_json = direct.jsonable(method)
        route_json = direct.jsonable(route)
        if method_json is None or route_json is None:
            return None
        head = f'{{"method": {method_json}, "route": {route_json}, "path": '
        routes = self._heads.setdefault(method, {})  # methods: the known ones and _OTHER
        if len(routes) >= 4096:  # bounded, though routes are bounded labels too
            routes.clear()
        routes[route] = head
        return head

    def _masked_path(self, path: str) -> str:
        """``path`` (no query string) with secrets masked. Paths the redactor leaves as they are
        are remembered (a bounded set), so a repeated clean path costs one lookup; paths with a
        secret are never stored."""
        clean = self._clean_paths
        if path in clean:
            return path
        masked = self._redact(path[:2048])
        if masked == path and len(path) <= 256:
            if len(clean) >= 4096:
                clean.clear()
            clean.add(path)
        return masked
