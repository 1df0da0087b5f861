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
terminal), through the same handlers as stdlib logging.
"""

from __future__ import annotations

import ipaddress
import random
from typing import TYPE_CHECKING, Any

import structlog

from .context import trace_ids

if TYPE_CHECKING:
    from ._config import Config
    from .queries import QueryLedger
    from .redact import Redactor
    from .timing import Exchange

__all__ = ["AccessLog", "client_ip"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
        slow = seconds >= self._slow
        failed = status >= 500 or bool(error_type)
        if not (failed or slow) and self._sample < 1.0 and random.random() >= self._sample:
            return
        path = exchange.path
        if exchange.query:
            path = f"{path}?{exchange.query}"
        fields: dict[str, Any] = {
            "method": exchange.method,
            "route": route,
            "path": self._redact(path[:2048]),
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if exchange.request_id:
            fields["request_id"] = exchange.request_id
        if ledger is not None:
            fields["db_queries"] = ledger.count
            fields["db_ms"] = round(ledger.seconds * 1000, 3)
        if error_type:
            fields["error_type"] = error_type
        if self._release:
            fields["release"] = self._release
        ids = trace_ids()
        if ids is not None:
            fields["trace_id"], fields["span_id"] = ids
        if self._trusted:
            ip = client_ip(exchange.client, exchange.forwarded_for, self._trusted)
            if ip is not None:
                fields["client_ip"] = ip
        if failed:
            self._logger.error("request", **fields)
        elif slow:
            self._logger.warning("request", **fields)
        else:
            self._logger.info("request", **fields)
