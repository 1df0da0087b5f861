"""Calling an ASGI app in-process, with a receive channel the test controls."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def http_scope(path: str = "/", method: str = "GET", **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


async def call(
    app: Any, path: str = "/", method: str = "GET", *, disconnect: bool = False, **extra: Any
) -> list[Message]:
    """Run one request; the client disconnects right away if ``disconnect``."""
    sent: list[Message] = []
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if disconnect:
            return {"type": "http.disconnect"}
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        import anyio

        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope(path, method, **extra), receive, send)
    return sent


def status_of(messages: list[Message]) -> int:
    return int(next(m["status"] for m in messages if m["type"] == "http.response.start"))


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
