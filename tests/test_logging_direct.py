"""The access log's direct writer: the very line structlog and stdlib logging would write."""

from __future__ import annotations

import collections
import enum
import io
import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import launchguard.logging as lg_logging
from launchguard import LaunchGuard
from launchguard.context import request_id_var
from launchguard.redact import Redactor, default_redactor

from .asgi_util import call

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z")
ACCESS = "launchguard.access"
#: Keys structlog's stdlib bridge uses for itself (the direct writer leaves such events alone).
STRUCTLOG_OWN = ("event", "_record", "_from_structlog")


class Status(enum.IntEnum):
    OK = 200


class Text(str):
    def __str__(self) -> str:
        return "not what json prints"


@contextmanager
def only_configured_handler() -> Iterator[None]:
    """pytest's log capture adds handlers to the root logger; without them the root has only
    ``configure()``'s handler, as in production."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers = [
        h for h in saved if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    try:
        yield
    finally:
        root.handlers = saved


class Output:
    """``configure()`` into a buffer; writes one event both ways and returns both lines."""

    def __init__(self, json: bool, redactor: Redactor | None = None) -> None:
        self.buffer = io.StringIO()
        lg_logging.configure(stream=self.buffer, json=json, redactor=redactor)
        direct = lg_logging.direct_output()
        assert direct is not None
        self.direct = direct

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text

    def both(self, fields: dict[str, Any], method: str = "info") -> tuple[str, str]:
        """(structlog's line, the direct line), timestamps replaced by a placeholder."""
        with only_configured_handler():
            getattr(structlog.get_logger(ACCESS), method)("request", **fields)
            slow = self.take()
            assert self.direct.write(logging.getLogger(ACCESS), method, "request", dict(fields))
            direct = self.take()
        return STAMP.sub("<ts>", slow), STAMP.sub("<ts>", direct)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers = handlers
    root.setLevel(level)
    for name in (ACCESS, "launchguard"):
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).propagate = True


@pytest.fixture
def out(restore_logging: None) -> Output:
    return Output(json=True)


ACCESS_FIELDS: dict[str, Any] = {
    "method": "GET",
    "route": "/items/{item_id}",
    "path": "/items/7?page=2",
    "status": 200,
    "duration_ms": 0.244,
    "request_id": "2929c6e2c8b2a2c3ad9f3ff2ca2ff697",
    "db_queries": 3,
    "db_ms": 0.0,
    "release": "r1",
}

CASES: dict[str, dict[str, Any]] = {
    "access line": ACCESS_FIELDS,
    "secret in path": {**ACCESS_FIELDS, "path": f"/cb?token={GITHUB}"},
    "secret in an odd key": {**ACCESS_FIELDS, "note": f"card {GITHUB}"},
    "sensitive key": {**ACCESS_FIELDS, "api_key": "abc"},
    "quote backslash newline": {**ACCESS_FIELDS, "route": 'a"b\\c\nd'},
    "control and DEL": {**ACCESS_FIELDS, "path": "/a\x01b\x7f"},
    "non-ASCII": {**ACCESS_FIELDS, "path": "/caf\u00e9/\U0001f600"},
    "format characters": {**ACCESS_FIELDS, "route": "%s %d %r %%", "pct%key": "{0} {}"},
    "empty strings": {**ACCESS_FIELDS, "release": "", "route": ""},
    "nan and inf": {**ACCESS_FIELDS, "duration_ms": float("nan"), "db_ms": float("inf")},
    "bool and None": {**ACCESS_FIELDS, "cached": True, "user": None},
    "int enum status": {**ACCESS_FIELDS, "status": Status.OK},
    "str subclass": {**ACCESS_FIELDS, "route": Text("/x")},
    "nested values": {**ACCESS_FIELDS, "tags": ["a", GITHUB], "extra": {"password": "x"}},
    "bytes": {**ACCESS_FIELDS, "body": b"raw"},
    "keys the processors set": {**ACCESS_FIELDS, "logger": "x", "level": "y", "timestamp": 1},
    "trace ids given": {**ACCESS_FIELDS, "trace_id": "a" * 32, "span_id": "b" * 16},
    "one string": {"n": 1},
    "no fields": {},
}


class TestSameLine:
    @pytest.mark.parametrize("case", list(CASES))
    @pytest.mark.parametrize("method", ["info", "warning", "error"])
    def test_json(self, out: Output, case: str, method: str) -> None:
        """JSON output: the direct line equals structlog's, byte for byte but the timestamp."""
        slow, direct = out.both(CASES[case], method)
        assert direct == slow
        assert GITHUB not in direct

    def test_repeated_layout(self, out: Output) -> None:
        """A layout seen before (its cached templates) still gives structlog's line."""
        for path in ("/a", "/b", '/"q"', f"/x?token={GITHUB}", "/a"):
            slow, direct = out.both({**ACCESS_FIELDS, "path": path})
            assert direct == slow

    @pytest.mark.parametrize("case", ["access line", "secret in path", "nested values"])
    def test_console(self, restore_logging: None, case: str) -> None:
        """Console output (a terminal): the direct line equals structlog's too."""
        slow, direct = Output(json=False).both(CASES[case])
        assert direct == slow

    def test_own_redactor_rules(self, restore_logging: None) -> None:
        """A redactor with rules of its own (they may match timestamps and ids): same line."""
        redactor = Redactor(
            extra_patterns=[("stamp", r"\d{4}-\d\d-\d\dT[0-9:.]+Z"), ("hexid", r"[0-9a-f]{32}")]
        )
        output = Output(json=True, redactor=redactor)
        for _ in range(2):  # the second time with the values cached
            slow, direct = output.both(ACCESS_FIELDS)
            assert direct == slow
            assert '"timestamp": "[REDACTED:stamp]"' in direct
            assert '"request_id": "[REDACTED:hexid]"' in direct

    def test_request_context(self, out: Output) -> None:
        """The request id of the context is added when the event has none, as structlog does."""
        token = request_id_var.set("rid-1")
        try:
            fields = {k: v for k, v in ACCESS_FIELDS.items() if k != "request_id"}
            slow, direct = out.both(fields)
        finally:
            request_id_var.reset(token)
        assert direct == slow
        assert '"request_id": "rid-1"' in direct

    def test_bound_contextvars(self, out: Output) -> None:
        """structlog.contextvars values are merged (bound ones run the real processors)."""
        with structlog.contextvars.bound_contextvars(user="u1", session_token="s3cr3t-value"):
            slow, direct = out.both(ACCESS_FIELDS)
        assert direct == slow
        assert '"user": "u1"' in direct
        assert "s3cr3t-value" not in direct
        slow, direct = out.both(ACCESS_FIELDS)  # unbound again
        assert direct == slow

    def test_trace_ids(self, out: Output) -> None:
        """Under an OpenTelemetry span the trace and span ids are added the same way."""
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("span"):
            slow, direct = out.both(ACCESS_FIELDS)
        assert direct == slow
        assert '"trace_id": ' in direct

    @settings(max_examples=200, deadline=None)
    @given(
        st.dictionaries(
            # not the names of BoundLogger.info's own parameters: no caller can pass them
            st.text(min_size=1, max_size=12).filter(lambda key: key not in ("self", "event")),
            st.one_of(
                st.text(max_size=40),
                st.integers(),
                st.floats(),
                st.booleans(),
                st.none(),
                st.sampled_from([GITHUB, "password=hunter2", "Bearer abc.def.ghi"]),
            ),
            max_size=8,
        )
    )
    def test_any_flat_event(self, fields: dict[str, Any]) -> None:
        """Any flat event: the direct line equals structlog's."""
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            output = Output(json=True)
            fields = {k: v for k, v in fields.items() if k not in STRUCTLOG_OWN}
            slow, direct = output.both(fields)
            assert direct == slow
        finally:
            structlog.reset_defaults()
            root.handlers = handlers
            root.setLevel(level)


class TestLeavesAlphabet:
    def test_default_redactor(self) -> None:
        """The default redactor has no keyword spelled with digits, hex, and timestamp marks."""
        assert default_redactor().leaves_alphabet("0123456789abcdef-:.TZ")
        assert not default_redactor().leaves_alphabet("abcdefghijklmnopqrstuvwxyz")
        assert not default_redactor().leaves_alphabet("é")

    def test_case_folded_keywords(self) -> None:
        """Case-insensitive keywords count in either case (``AUTH`` spells ``auth``)."""
        assert not default_redactor().leaves_alphabet("AUTH")
        assert not default_redactor().leaves_alphabet("auth")

    def test_own_rules(self) -> None:
        """Rules of your own run on every text: no alphabet is safe."""
        assert not Redactor(extra_patterns=[("x", "1")]).leaves_alphabet("0")


class TestRule:
    """Any other setup than configure()'s: the caller must log through structlog."""

    def write(self, out: Output, method: str = "info") -> bool:
        with only_configured_handler():
            return out.direct.write(logging.getLogger(ACCESS), method, "request", {"a": "b"})

    def test_configured(self, out: Output) -> None:
        """configure()'s own setup: written directly."""
        assert self.write(out)
        assert '"a": "b"' in out.take()

    def test_level_drops(self, out: Output) -> None:
        """Below the logger's level nothing is written, as filter_by_level drops it."""
        logging.getLogger("launchguard").setLevel(logging.WARNING)
        assert self.write(out)
        assert out.take() == ""
        assert self.write(out, "warning")
        assert out.take() != ""

    def test_other_root_handler(self, out: Output) -> None:
        """Another handler on the root (pytest's capture, OpenTelemetry's): structlog path."""
        root = logging.getLogger()
        with only_configured_handler():
            root.addHandler(logging.NullHandler())
            assert not out.direct.write(logging.getLogger(ACCESS), "info", "request", {})

    def test_handler_below_root(self, out: Output) -> None:
        """A handler on an ancestor, or propagation off: structlog path (also after a line
        went directly, when the way up is remembered)."""
        assert self.write(out)
        parent = logging.getLogger("launchguard")
        parent.addHandler(logging.NullHandler())
        try:
            assert not self.write(out)
        finally:
            parent.handlers.clear()
        assert self.write(out)
        parent.propagate = False
        assert not self.write(out)
        parent.propagate = True
        assert self.write(out)
        logging.getLogger(ACCESS).propagate = False
        assert not self.write(out)

    def test_new_logger_between(self, out: Output) -> None:
        """A logger made later between a logger and the root becomes its parent: its handler
        is seen although the way up was remembered without it."""
        name = "lg_test_new_between.a.b"
        logger = logging.getLogger(name)
        with only_configured_handler():
            assert out.direct.write(logger, "info", "e", {})
            middle = logging.getLogger("lg_test_new_between.a")
            assert logger.parent is middle
            middle.addHandler(logging.NullHandler())
            try:
                assert not out.direct.write(logger, "info", "e", {})
            finally:
                middle.handlers.clear()
            assert out.direct.write(logger, "info", "e", {})

    def test_filters(self, out: Output) -> None:
        """A filter on the logger or the handler: structlog path."""
        assert self.write(out)
        access = logging.getLogger(ACCESS)
        access.addFilter(logging.Filter())
        try:
            assert not self.write(out)
        finally:
            access.filters.clear()
        handler = next(
            h
            for h in logging.getLogger().handlers
            if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
        )
        handler.addFilter(logging.Filter())
        assert not self.write(out)

    @pytest.mark.parametrize("key", ["_record", "_from_structlog"])
    def test_bridge_keys(self, out: Output, key: str) -> None:
        """An event with a key of structlog's stdlib bridge: structlog path."""
        with only_configured_handler():
            assert not out.direct.write(logging.getLogger(ACCESS), "info", "e", {key: None})

    def test_structlog_reconfigured(self, out: Output) -> None:
        """structlog.configure(...) after configure(): structlog path."""
        assert self.write(out)
        structlog.configure(processors=[structlog.processors.JSONRenderer()])
        assert not self.write(out)

    def test_structlog_changed_in_place(self, out: Output) -> None:
        """structlog's processor list changed in place, or another of its settings changed:
        structlog path."""
        assert self.write(out)
        processors = structlog.get_config()["processors"]
        processors.insert(1, structlog.processors.add_log_level)
        assert not self.write(out)
        processors.pop(1)
        assert self.write(out)
        structlog.configure(context_class=collections.OrderedDict)
        assert not self.write(out)

    def test_patched_stdlib(self, out: Output, monkeypatch: pytest.MonkeyPatch) -> None:
        """A replaced Logger.callHandlers (Sentry's logging integration): structlog path."""
        original = logging.Logger.callHandlers

        def patched(self: logging.Logger, record: logging.LogRecord) -> None:
            original(self, record)

        assert self.write(out)
        monkeypatch.setattr(logging.Logger, "callHandlers", patched)
        assert not self.write(out)

    def test_formatter_changed(self, out: Output) -> None:
        """A processor added to the formatter's chain: structlog path."""
        formatter = next(
            h.formatter
            for h in logging.getLogger().handlers
            if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
        )
        assert isinstance(formatter, structlog.stdlib.ProcessorFormatter)
        formatter.processors = [*formatter.processors]
        assert self.write(out)  # an equal chain is the same chain
        formatter.processors.insert(0, structlog.processors.add_log_level)
        assert not self.write(out)

    def test_write_error(self, out: Output, capsys: pytest.CaptureFixture[str]) -> None:
        """A failing stream goes to the handler's handleError, as stdlib logging does."""
        out.buffer.close()
        assert self.write(out)
        assert "Logging error" in capsys.readouterr().err


class TestAccessLog:
    @pytest.mark.anyio
    async def test_guard_line_same_both_ways(
        self, registry: CollectorRegistry, restore_logging: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The guard's access line is the same through the direct writer and through structlog."""
        out = Output(json=True)

        async def view(request: Request) -> Response:
            return PlainTextResponse("ok")

        guard = LaunchGuard(
            registry=registry, environ={}, release="r1", header_lint=False, access_log=True
        )
        app = guard.asgi(Starlette(routes=[Route("/items/{item_id}", view)]))
        headers = [(b"x-request-id", b"rid-7")]
        lines = []
        for direct in (True, False):
            if not direct:
                monkeypatch.setattr(lg_logging, "_direct", None)
            with only_configured_handler():
                await call(app, "/items/1", query_string=f"t={GITHUB}".encode(), headers=headers)
            lines.append(out.take())
        normalized = [
            re.sub(r'"duration_ms": [0-9.e-]+', "<d>", STAMP.sub("<ts>", line)) for line in lines
        ]
        assert normalized[0] == normalized[1]
        assert normalized[0].count("\n") == 1
        assert GITHUB not in lines[0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestAccessLine:
    """AccessLog.log's own JSON line equals the structlog path's, whatever the fields."""

    @staticmethod
    def both(
        *,
        release: str = "r1",
        trusted: bool = False,
        method: str = "GET",
        route: Any = "/items/{item_id}",
        path: str = "/items/7",
        query: str = "",
        status: Any = 200,
        error_type: str = "",
        seconds: float = 0.0123,
        request_id: str = "2929c6e2c8b2a2c3ad9f3ff2ca2ff697",
        context_id: str | None = None,
        queries: int | None = 2,
        db_seconds: float = 0.0042,
        span: bool = False,
        redactor: Redactor | None = None,
        made: bool = False,
    ) -> tuple[str, str]:
        from launchguard._config import Config
        from launchguard.access import AccessLog
        from launchguard.queries import QueryLedger
        from launchguard.timing import Exchange

        output = Output(json=True, redactor=redactor)
        options: dict[str, Any] = {"release": release}
        if trusted:
            options["trusted_proxies"] = ["10.0.0.0/8"]
        log = AccessLog(Config.build(options, {}), redactor or default_redactor())
        exchange = Exchange(method, 0.0)
        exchange.path, exchange.query, exchange.request_id = path, query, request_id
        exchange.request_id_made = made
        exchange.client, exchange.forwarded_for = "10.0.0.1", "198.51.100.7, 10.0.0.2"
        ledger = None
        if queries is not None:
            ledger = QueryLedger()
            ledger.count, ledger.seconds = queries, db_seconds

        def run() -> str:
            token = request_id_var.set(context_id) if context_id is not None else None
            try:
                log.log(exchange, route, status, error_type, seconds, ledger)
            finally:
                if token is not None:
                    request_id_var.reset(token)
            return output.take()

        with only_configured_handler(), ExitStack() as stack:
            if span:
                from opentelemetry.sdk.trace import TracerProvider

                tracer = TracerProvider().get_tracer("test")
                stack.enter_context(tracer.start_as_current_span("s"))
            direct = run()
            # Again, with the line's parts now remembered (its start per route, clean paths
            # and values): the same line.
            again = run()
            saved, lg_logging._direct = lg_logging._direct, None
            try:
                slow = run()
            finally:
                lg_logging._direct = saved
        assert STAMP.sub("<ts>", again) == STAMP.sub("<ts>", direct)
        return STAMP.sub("<ts>", slow), STAMP.sub("<ts>", direct)

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"release": ""},
            {"trusted": True},
            {"queries": None},
            {"queries": 0},
            {"queries": 0, "db_seconds": 0.0},
            {"queries": 1, "db_seconds": 0.0},
            {"request_id": ""},
            {"request_id": "", "context_id": "outer-id"},
            {"request_id": "abc-DEF.1"},
            {"status": 500, "error_type": "RuntimeError"},
            {"status": 404},
            {"seconds": 2.5},
            {"seconds": float("inf")},
            {"seconds": float("nan")},
            {"db_seconds": float("inf")},
            {"db_seconds": float("nan"), "seconds": 1e300},
            {"status": Status.OK},
            {"route": Text("/x")},
            {"route": 'a"b\\c'},
            {"path": "/caf\u00e9/\U0001f600"},
            {"path": "/a\nb"},
            {"query": f"token={GITHUB}&page=2"},
            {"path": f"/reset/{GITHUB}"},
            {"error_type": "\u00c9rror"},
            {"release": f"build {GITHUB}"},
            {"method": "_OTHER"},
            {"span": True},
            {"span": True, "trusted": True, "status": 503},
        ],
        ids=repr,
    )
    def test_fields(self, restore_logging: None, options: dict[str, Any]) -> None:
        """Every optional field and awkward value: byte for byte the same line."""
        slow, direct = self.both(**options)
        assert direct == slow
        assert direct.count("\n") == 1
        assert GITHUB not in direct

    def test_own_line_used(self, restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
        """With configure()'s setup the access log writes its own line (not the generic one)."""

        def refuse(*args: Any, **kwargs: Any) -> bool:
            raise AssertionError("the generic direct write was used")

        monkeypatch.setattr(lg_logging.DirectOutput, "write", refuse)
        for options in ({}, {"span": True, "trusted": True}, {"request_id": "", "queries": None}):
            slow, direct = self.both(**options)
            assert direct == slow

    def test_made_request_id(self, restore_logging: None) -> None:
        """An id the guard made is written without a scan, unless the redactor has a rule of
        its own (which could match hex): then it is masked like any value."""
        made = "2929c6e2c8b2a2c3ad9f3ff2ca2ff697"
        slow, direct = self.both(made=True, request_id=made)
        assert direct == slow
        assert f'"request_id": "{made}"' in direct
        redactor = Redactor(extra_patterns=[("hex_id", "[0-9a-f]{32}")])
        slow, direct = self.both(made=True, request_id=made, redactor=redactor)
        assert direct == slow
        assert made not in direct

    def test_sensitive_key_names(self, restore_logging: None) -> None:
        """A redactor that treats one of our keys as sensitive: the same (masked) line."""
        redactor = Redactor(sensitive_keys=["route"])
        slow, direct = self.both(redactor=redactor)
        assert direct == slow
        assert '"route": "[REDACTED' in direct

    def test_bound_contextvars(self, restore_logging: None) -> None:
        """structlog.contextvars bound: the real processors, the same line."""
        with structlog.contextvars.bound_contextvars(tenant="t1"):
            slow, direct = self.both()
        assert direct == slow
        assert '"tenant": "t1"' in direct

    @settings(max_examples=150, deadline=None)
    @given(
        route=st.text(max_size=30),
        path=st.text(max_size=30),
        query=st.text(max_size=30) | st.just(f"token={GITHUB}"),
        error_type=st.text(max_size=10),
        release=st.text(max_size=10),
        request_id=st.text(max_size=10) | st.just("2929c6e2c8b2a2c3ad9f3ff2ca2ff697"),
        seconds=st.floats(min_value=0, max_value=10),
        status=st.integers(min_value=100, max_value=599),
    )
    def test_any_values(self, **values: Any) -> None:
        """Any values: the same line."""
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            slow, direct = self.both(**values)
            assert direct == slow
        finally:
            structlog.reset_defaults()
            root.handlers = handlers
            root.setLevel(level)
