"""The guard's own endpoints (``/metrics``), framework-neutral; the adapters translate.

Protection, when configured: a bearer token compared in constant time, and a client-network
allowlist checked against the direct peer address (never a forwarded header, which a client can
forge). Only the exact configured path is served; anything else goes to the app.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
from collections.abc import Callable

from ._config import Config

__all__ = ["AdminResponse", "MetricsEndpoint"]

AdminResponse = tuple[int, list[tuple[str, str]], bytes]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MetricsEndpoint:
    """Serves the metrics exposition with negotiation, gzip and access control."""

    def __init__(self, config: Config, render: Callable[[str], tuple[bytes, str]]) -> None:
        self._render = render
        self._token = config.metrics_token.encode() if config.metrics_token else b""
        self._allow: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in config.metrics_allow
        )

    def respond(
        self,
        method: str,
        *,
        accept: str,
        accept_encoding: str,
        authorization: str,
        client: str | None,
    ) -> AdminResponse:
        """(status, headers, body) for one scrape; the body is empty for HEAD."""
        headers = [("Cache-Control", "no-store")]
        if method not in ("GET", "HEAD"):
            return 405, [*headers, ("Allow", "GET, HEAD")], b""
        if self._allow and not self._client_allowed(client):
            return 403, [*headers, ("Content-Type", "text/plain; charset=utf-8")], b"forbidden\n"
        if self._token and not self._token_ok(authorization):
            return (
                401,
                [
                    *headers,
                    ("WWW-Authenticate", 'Bearer realm="metrics"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                ],
                b"unauthorized\n",
            )
        body, content_type = self._render(accept)
        headers.append(("Content-Type", content_type))
        headers.append(("Vary", "Accept, Accept-Encoding"))
        if "gzip" in accept_encoding.lower():
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        return 200, headers, b"" if method == "HEAD" else body

    def _client_allowed(self, client: str | None) -> bool:
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)

    def _token_ok(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            # Still compare, so a wrong scheme costs the same time as a wrong token.
            hmac.compare_digest(self._token, self._token)
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), self._token)
