"""ASGI and WSGI protocol type aliases, owned here so the core imports no framework."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Protocol, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
OptExcInfo: TypeAlias = ExcInfo | tuple[None, None, None]
Environ: TypeAlias = dict[str, Any]


class StartResponse(Protocol):
    """The WSGI ``start_response`` callable (PEP 3333)."""

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = ...,
        /,
    ) -> Callable[[bytes], object]: ...


WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]
