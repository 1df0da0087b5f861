"""The WSGI adapter, driven with PEP 3333 calls and with Flask's and werkzeug's own machinery."""

from __future__ import annotations

import io
import wsgiref.util
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from launchguard import LaunchGuard
from launchguard.metrics import DURATION

from .helpers import scrape, value

COUNT = DURATION + "_count"


def environ(path: str = "/", method: str = "GET") -> dict[str, Any]:
    env: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(env)
    env["PATH_INFO"] = path
    env["REQUEST_METHOD"] = method
    return env


def run(app: Any, env: dict[str, Any]) -> tuple[str, list[bytes]]:
    """Act as a server: call, iterate, close."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = app(env, start_response)
    try:
        chunks = list(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return statuses[-1], chunks


def guard(registry: CollectorRegistry, **options: Any) -> LaunchGuard:
    return LaunchGuard(service="test", registry=registry, environ={}, **options)


class ClosingBody:
    """A body iterable that records whether the server closed it."""

    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise OSError("disk gone")
            yield chunk

    def close(self) -> None:
        self.closed += 1


class TestBodies:
    def test_list_body_passes_through_as_is(self, registry: CollectorRegistry) -> None:
        """A list body is returned unwrapped (the server keeps its Content-Length shortcut)."""
        body = [b"hello"]

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return body

        g = guard(registry, route_resolver=lambda env: "/hello")
        assert g.wsgi(app)(environ(), lambda *a: None) is body
        assert (
            value(scrape(registry), COUNT, http_route="/hello", http_response_status_code="200")
            == 1
        )

    def test_generator_is_timed_to_exhaustion_and_closed(self, registry: CollectorRegistry) -> None:
        """A generator body is recorded only when the server closes it, close() passed on."""
        body = ClosingBody([b"a", b"b"])

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("201 Created", [])
            return body

        status, chunks = run(guard(registry).wsgi(app), environ())
        assert (status, chunks, body.closed) == ("201 Created", [b"a", b"b"], 1)
        assert value(scrape(registry), COUNT, http_response_status_code="201") == 1

    def test_lazy_start_response_inside_generator(self, registry: CollectorRegistry) -> None:
        """``start_response`` called on the first iteration still gives the status."""

        def app(env: Any, start_response: Any) -> Iterator[bytes]:
            start_response("202 Accepted", [])
            yield b"late"

        status, _ = run(guard(registry).wsgi(app), environ())
        assert status == "202 Accepted"
        assert value(scrape(registry), COUNT, http_response_status_code="202") == 1

    def test_error_while_iterating_keeps_status_and_closes(
        self, registry: CollectorRegistry
    ) -> None:
        """An exception mid-body is re-raised, keeps the status, sets error_type; close() runs."""
        body = ClosingBody([b"a", b"b"], fail_at=1)

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return body

        with pytest.raises(OSError, match="disk gone"):
            run(guard(registry).wsgi(app), environ())
        assert body.closed == 1
        samples = scrape(registry)
        assert value(samples, COUNT, http_response_status_code="200", error_type="OSError") == 1

    def test_exception_before_response_is_500_and_reraised(
        self, registry: CollectorRegistry
    ) -> None:
        """An exception from the app call itself is one 500, re-raised unchanged."""
        error = KeyError("missing")

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            raise error

        with pytest.raises(KeyError) as info:
            guard(registry).wsgi(app)(environ(), lambda *a: None)
        assert info.value is error
        samples = scrape(registry)
        assert value(samples, COUNT) == 1
        assert value(samples, COUNT, http_response_status_code="500", error_type="KeyError") == 1

    def test_file_wrapper_keeps_working(self, registry: CollectorRegistry) -> None:
        """A ``wsgi.file_wrapper`` body streams the file and closes it."""
        data = io.BytesIO(b"x" * 20_000)

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return env["wsgi.file_wrapper"](data, 4096)  # type: ignore[no-any-return]

        env = environ()
        env["wsgi.file_wrapper"] = wsgiref.util.FileWrapper
        _, chunks = run(guard(registry).wsgi(app), env)
        assert b"".join(chunks) == b"x" * 20_000
        assert data.closed
        assert value(scrape(registry), COUNT, http_response_status_code="200") == 1

    def test_abandoned_body_is_499(self, registry: CollectorRegistry) -> None:
        """A body the server closes before exhausting it (client gone) is a 499."""
        body = ClosingBody([b"a", b"b", b"c"])

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return body

        result = guard(registry).wsgi(app)(environ(), lambda *a: None)
        iterator = iter(result)
        next(iterator)
        result.close()  # type: ignore[attr-defined]
        assert body.closed == 1
        assert value(scrape(registry), COUNT, http_response_status_code="499") == 1

    def test_head_body_not_iterated_is_not_499(self, registry: CollectorRegistry) -> None:
        """A server that skips a HEAD body is not a disconnect."""
        body = ClosingBody([b"a"])

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [])
            return body

        result = guard(registry).wsgi(app)(environ(method="HEAD"), lambda *a: None)
        result.close()  # type: ignore[attr-defined]
        assert (
            value(
                scrape(registry), COUNT, http_response_status_code="200", http_request_method="HEAD"
            )
            == 1
        )

    def test_close_called_twice_records_once(self, registry: CollectorRegistry) -> None:
        """A second close() does not record the request again."""

        def app(env: Any, start_response: Any) -> Iterator[bytes]:
            start_response("200 OK", [])
            yield b"x"

        result = guard(registry).wsgi(app)(environ(), lambda *a: None)
        list(result)
        result.close()  # type: ignore[attr-defined]
        result.close()  # type: ignore[attr-defined]
        assert value(scrape(registry), COUNT) == 1


class TestWerkzeug:
    def test_werkzeug_test_client(self, registry: CollectorRegistry) -> None:
        """A werkzeug app under the guard answers as before and is recorded."""
        from werkzeug.test import Client
        from werkzeug.wrappers import Request, Response

        @Request.application  # type: ignore[arg-type]
        def app(request: Request) -> Response:
            return Response("hi " + request.path)

        client = Client(guard(registry).wsgi(app))
        response = client.get("/x")
        assert (response.status_code, response.data) == (200, b"hi /x")
        response.close()  # a server closes the body; recording happens then
        assert value(scrape(registry), COUNT, http_route="__unmatched__") == 1


class TestRequestIdHeader:
    @staticmethod
    def headers_sent(app: Any) -> list[tuple[str, str]]:
        sent: list[tuple[str, str]] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            sent.extend(headers)
            return lambda data: None

        body = app(environ(), start_response)
        list(body)
        return sent

    @pytest.mark.parametrize("name", ["X-Request-ID", "x-request-id", "X-REQUEST-ID"])
    def test_app_own_id_header_wins(self, registry: CollectorRegistry, name: str) -> None:
        """An app that sets the id header itself (in any case) keeps it and gets no second."""

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("X-Request-IDx", "no"), (name, "app-1")])
            return [b""]

        sent = self.headers_sent(guard(registry).wsgi(app))
        assert [v for k, v in sent if k.lower() == "x-request-id"] == ["app-1"]

    def test_id_header_added_after_lookalikes(self, registry: CollectorRegistry) -> None:
        """Headers that only look like the id header do not stop the guard's."""

        def app(env: Any, start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("X-Request-IDx", "no"), ("X-Request-I", "no")])
            return [b""]

        sent = self.headers_sent(guard(registry).wsgi(app))
        ids = [v for k, v in sent if k.lower() == "x-request-id"]
        assert len(ids) == 1
        assert len(ids[0]) == 32
