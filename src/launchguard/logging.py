"""Structured, secret-free logs: one call sets structlog and stdlib logging to the same output.

    import launchguard.logging

    launchguard.logging.configure()            # JSON lines; readable text on a terminal

Every line, structlog or stdlib, then carries ``timestamp``, ``level``, ``logger``, the
``request_id`` of the request being served (and ``trace_id``/``span_id`` under OpenTelemetry),
and goes through the redactor last, just before rendering, so no processor can add a secret
after it. For your own setup, the pieces are:

- :class:`RedactingProcessor`: a structlog processor; put it after every processor that adds
  data (``configure`` does, and :func:`check_processors` fails a chain where something follows
  it other than the renderer);
- :class:`RedactingFilter`: a ``logging.Filter`` that masks the formatted message, its args,
  ``exc_text`` and ``stack_info``;
- :func:`add_request_context` (processor) and :class:`RequestContextFilter` (stdlib filter):
  the request and trace ids.

The access log (one line per request) writes straight to the handler ``configure`` installed
when that gives the very line structlog and stdlib logging would have written (see
:class:`DirectOutput` for the rule); with any other setup it goes through structlog.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from operator import attrgetter, itemgetter
from typing import Any, Protocol

import structlog

from .context import request_id_var, trace_ids
from .redact import Redactor, default_redactor

_STRUCTLOG_CONFIG: Any
try:  # read per line to see whether structlog still has configure()'s setup
    from structlog._config import _CONFIG as _STRUCTLOG_CONFIG
except ImportError:  # pragma: no cover - a structlog without it: always the structlog path
    _STRUCTLOG_CONFIG = None
#: structlog's own context variables (``bind_contextvars``); None if structlog moved them.
_STRUCTLOG_VARS: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)

__all__ = [
    "DirectOutput",
    "RedactingFilter",
    "RedactingProcessor",
    "RequestContextFilter",
    "TextStream",
    "add_request_context",
    "check_processors",
    "configure",
]


def add_request_context(
    logger: Any, method_name: str, event_dict: dict[str, Any]
) -> dict[str, Any]:
    """structlog processor: the current request id and trace ids, if any."""
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    ids = trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


class RedactingProcessor:
    """structlog processor masking secrets in every key and value of the event.

    Put it last before the renderer: anything a later processor adds is not redacted.
    The caller's objects are never mutated; a fresh event dict is returned.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self._redactor = redactor
        self._sensitive_keys: dict[str, bool] = {}

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        redactor = self._redactor or default_redactor()
        if self._clean(redactor, event_dict):
            return event_dict
        redacted = redactor.redact_value(dict(event_dict))
        if isinstance(redacted, dict):
            return redacted
        return {"event": "[REDACTED]"}  # never the unmasked original

    def _clean(self, redactor: Redactor, event_dict: Mapping[str, Any]) -> bool:
        """True when nothing in a flat event needs masking: no sensitive key, and one scan of
        the joined keys and strings finds nothing (most lines). Anything else, or any doubt,
        goes the full way."""
        parts = []
        for key, value in event_dict.items():
            if type(key) is not str or not self._plain_key(key, redactor):
                return False
            parts.append(key)
            kind = type(value)
            if kind is str:
                parts.append(value)
            elif value is not None and kind not in (int, float, bool):
                return False
        return self._clean_text("\n".join(parts), redactor)

    @property
    def redactor(self) -> Redactor:
        """The redactor it masks with (the shared default one unless one was given)."""
        return self._redactor or default_redactor()

    def _plain_key(self, key: str, redactor: Redactor | None = None) -> bool:
        """Whether the value under ``key`` is not masked whole (cached per key)."""
        keys = self._sensitive_keys
        sensitive = keys.get(key)
        if sensitive is None:
            sensitive = (redactor or self._redactor or default_redactor()).is_sensitive_key(key)
            if len(keys) < 4096:
                keys[key] = sensitive
        return not sensitive

    def _clean_text(self, text: str, redactor: Redactor | None = None) -> bool:
        """Whether the redactor leaves ``text`` (keys and strings joined by newlines) as is."""
        return (redactor or self._redactor or default_redactor()).redact_text(text) == text


class RedactingFilter(logging.Filter):
    """stdlib filter masking secrets in the formatted message, ``exc_text`` and ``stack_info``.

    The message is formatted with its args once, masked, and stored without args; an exception
    is rendered to ``exc_text`` and masked (its ``exc_info`` is kept for handlers that want the
    type, but formatters use ``exc_text`` first).
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # a structlog event: its RedactingProcessor masks it
            return True
        redact = (self._redactor or default_redactor()).redact_text
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestContextFilter(logging.Filter):
    """stdlib filter adding ``request_id`` (and ``trace_id``/``span_id``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        ids = trace_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return True


def check_processors(processors: Sequence[Any]) -> None:
    """Fail if anything but the final renderer follows a :class:`RedactingProcessor`."""
    positions = [i for i, p in enumerate(processors) if isinstance(p, RedactingProcessor)]
    if not positions:
        raise ValueError("no RedactingProcessor in the structlog processor chain")
    if positions[-1] < len(processors) - 2:
        after = [type(p).__name__ for p in processors[positions[-1] + 1 : -1]]
        raise ValueError(
            f"processors after RedactingProcessor could add unredacted data: {', '.join(after)}"
        )


class TextStream(Protocol):
    """What :func:`configure` writes to: ``sys.stderr``, a file, a ``BackgroundStream``."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def configure(
    *,
    json: bool | None = None,
    level: int | str = logging.INFO,
    stream: TextStream | None = None,
    redactor: Redactor | None = None,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr) in one format, secrets masked.

    ``json`` defaults to JSON unless ``stream`` is a terminal. Replaces the root logger's
    handlers and structlog's configuration; call it once at startup.
    """
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_context,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    redacting = RedactingProcessor(redactor)
    processors = [
        structlog.stdlib.filter_by_level,
        *shared,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    factory = structlog.stdlib.LoggerFactory()
    structlog.configure(
        processors=processors,
        logger_factory=factory,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redacting,
            renderer,
        ],
    )
    check_processors([*formatter.processors])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    global _direct
    _direct = DirectOutput(processors, factory, handler, formatter, redacting, renderer, json)


_direct: DirectOutput | None = None


def direct_output() -> DirectOutput | None:
    """The output the last :func:`configure` call installed (None before the first call).

    Whether it may be written to directly is decided per line: :meth:`DirectOutput.write`.
    """
    return _direct


def iso_second(seconds: int) -> str:
    """The ISO text of a second since the epoch, UTC, without a zone suffix: what
    ``TimeStamper(fmt="iso", utc=True)`` writes before the microseconds and ``Z``."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "")


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_INF = float("inf")
#: Characters of the values the access log makes itself: timestamps, hex request and trace
#: ids, numbers. A redactor none of whose keywords can be spelled with them leaves them as is.
_SAFE_ALPHABET = "0123456789abcdef-:.TZ"
_Logger = logging.Logger
_Handler = logging.Handler
_StreamHandler = logging.StreamHandler


#: Each reads, in one call, the stdlib methods of one class a structlog line passes through
#: (Sentry's logging integration, for one, replaces ``Logger.callHandlers``).
_logger_methods = attrgetter("_log", "makeRecord", "handle", "callHandlers")
_handler_methods = attrgetter("handle", "format")
_stream_methods = attrgetter("emit", "flush")


def _stdlib_methods() -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The stdlib logging methods a structlog line passes through, as they are now."""
    return _logger_methods(_Logger), _handler_methods(_Handler), _stream_methods(_StreamHandler)


#: Those methods as the stdlib defines them; None if something replaced one before we looked.
_STDLIB_METHODS: tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]] | None = _stdlib_methods()
if any(
    getattr(getattr(method, "__code__", None), "co_filename", None) != logging.__file__
    for methods in _stdlib_methods()
    for method in methods
):  # pragma: no cover - patched before launchguard.logging was imported
    _STDLIB_METHODS = None
#: Logger classes whose dispatch is the stdlib's (structlog's only changes the caller lookup).
_LOGGER_TYPES = (logging.Logger, logging.RootLogger, structlog.stdlib._FixedFindCallerLogger)


class _Shape:
    """The JSON template of one recurring event layout: the same keys (all plain), the same
    value types (``str``, ``int``, ``float``). Strings are put between quotes unescaped, so the
    template is used only when no string needs escaping (no quote, backslash, control or
    non-ASCII character): then its output is ``json.dumps``'."""

    __slots__ = ("floats", "json", "strings", "types")

    def __init__(self, keys: tuple[str, ...], types: tuple[type, ...]) -> None:
        self.types = types
        self.strings = itemgetter(*(i for i, kind in enumerate(types) if kind is str))
        self.floats = tuple(i for i, kind in enumerate(types) if kind is float)
        parts = []
        for key, kind in zip(keys, types, strict=True):
            value = '"%s"' if kind is str else "%r" if kind is float else "%d"
            parts.append(encode_basestring_ascii(key).replace("%", "%%") + ": " + value)
        self.json = "{" + ", ".join(parts) + "}"


_NO_SHAPE: Any = object()


class DirectOutput:
    """Writes an event straight to the handler :func:`configure` installed.

    :meth:`write` produces the line structlog plus stdlib logging would have written for
    ``structlog.get_logger(name).<method>(event, **fields)``, without building a ``LogRecord``
    or running structlog's and stdlib's dispatch. It does so only when that is provably the
    same line, and otherwise returns ``False`` so the caller logs normally. The rule, checked
    on every line:

    - structlog's processors, logger factory, wrapper class and context class are still the
      ones ``configure()`` set (a ``structlog.configure(...)`` since then means the structlog
      path);
    - the stdlib logger passes the level (``isEnabledFor``), has no filters, and neither it nor
      any ancestor before the root has handlers (they all propagate); the root's only handler
      is ``configure()``'s, with its level, its filters and its formatter unchanged (pytest's
      log capture, an OpenTelemetry logging handler, or any added filter means the normal
      path); the logger's class and the stdlib methods a line passes through
      (``Logger._log``, ``makeRecord``, ``handle``, ``callHandlers``, ``Handler.handle``,
      ``format``, ``StreamHandler.emit``, ``flush``) are the stdlib's own (Sentry's logging
      integration replaces ``callHandlers`` to make breadcrumbs: then the normal path).

    Then the line is made as structlog would make it:

    - the shared processors: with ``structlog.contextvars`` values bound, the real ones; with
      none bound, the same steps inline (logger name, level, the ISO timestamp with its
      seconds part cached, request and trace ids);
    - redaction: written directly only when every key is plain (not a sensitive key name) and
      every string value is one the redactor leaves unchanged - checked value by value, with a
      bounded cache of values already found clean and no scan at all of values spelled only
      with characters no rule keyword uses (``Redactor.leaves_alphabet``: timestamps, hex
      ids). Then :class:`RedactingProcessor` would give an event with the same content
      whichever way its one-scan gate went (masking value by value changes nothing). Anything
      else runs the real processor;
    - rendering: the JSON line is built with ``json``'s own string encoder, or a cached
      template when no string needs escaping, when every value is a ``str``, ``int``, finite
      ``float``, ``bool`` or ``None`` (what ``JSONRenderer`` prints for them); else the real
      renderer runs. The console renderer always runs for real.

    Not reproduced: the ``LogRecord`` itself (its caller lookup, a custom record factory's side
    effects). An error while writing goes to the handler's ``handleError`` as in stdlib.
    """

    def __init__(
        self,
        processors: list[Any],
        factory: Any,
        handler: logging.StreamHandler[Any],
        formatter: structlog.stdlib.ProcessorFormatter,
        redacting: RedactingProcessor,
        renderer: Any,
        json: bool,
    ) -> None:
        self._processors = list(processors)
        self._shared = tuple(processors[1:-1])
        self._factory = factory
        self._handler = handler
        self._handlers = [handler]
        self._filters = list(handler.filters)
        self._formatter = formatter
        self._formatter_processors = list(formatter.processors)
        self._redacting = redacting
        self._redactor: Redactor | None = None  # the processor's, once it is needed
        self._safe = ""
        self._renderer = renderer
        self._json = json
        self._root = logging.getLogger()
        self._stamp: tuple[int, str] = (-(10**7), "")
        #: Keys known to be plain, non-sensitive strings -> their JSON form with ": ".
        self._keys: dict[str, str] = {}
        #: Event layouts seen (their keys) -> their templates (None: no template applies).
        self._shapes: dict[tuple[Any, ...], _Shape | None] = {}
        #: String values the redactor leaves unchanged -> their JSON form (bounded; never a
        #: value it would mask): a hit here is what :meth:`jsonable` would return.
        self.json_strings: dict[str, str] = {}

    def write(
        self,
        logger: logging.Logger,
        method_name: str,
        event: str,
        fields: dict[str, Any],
        *,
        traced: bool = False,
    ) -> bool:
        """Log ``event`` with ``fields`` on ``logger`` (a stdlib logger) at ``method_name``
        (``info``, ``warning`` or ``error``) if the rule allows; ``False`` if the caller must
        log through structlog. ``fields`` becomes the event dict (it is changed).
        ``traced``: the caller has just put the current trace ids into ``fields``, if there
        are any (they are not looked up again)."""
        if "_record" in fields or "_from_structlog" in fields:
            return False  # keys structlog's stdlib bridge uses for itself
        levelno = _LEVELS[method_name]
        ready = self.ready(logger, levelno)
        if ready:
            self.emit(logger, levelno, self._render(logger, method_name, event, fields, traced))
        return ready is not False

    def ready(self, logger: logging.Logger, levelno: int, plain_json: bool = False) -> bool | None:
        """Whether a line at ``levelno`` on ``logger`` may be written directly (the rule in the
        class docstring); None when the level drops it (nothing is to be written). With
        ``plain_json``, also whether the output is JSON with no ``structlog.contextvars`` value
        bound: then a line is its fields plus ``event``, ``logger``, ``level``, ``timestamp``
        (and the request and trace ids of the context when the fields lack them), rendered as
        ``json.dumps`` would (False then means either does not hold)."""
        config = _STRUCTLOG_CONFIG
        if (
            config is None
            or config.logger_factory is not self._factory
            or config.default_processors != self._processors
            or config.default_wrapper_class is not structlog.stdlib.BoundLogger
            or config.default_context_class is not dict
        ):
            return False
        if not logger.isEnabledFor(levelno):
            return None  # filter_by_level drops it
        methods = _STDLIB_METHODS
        if (
            logger.filters
            or type(logger) not in _LOGGER_TYPES
            or methods is None
            or _logger_methods(_Logger) != methods[0]
            or _handler_methods(_Handler) != methods[1]
            or _stream_methods(_StreamHandler) != methods[2]
        ):
            return False
        node: Any = logger
        root = self._root
        while node is not root:
            if node.handlers or not node.propagate:
                return False
            node = node.parent
            if node is None:
                return False
        handler = self._handler
        if (
            root.handlers != self._handlers
            or levelno < handler.level
            or handler.filters != self._filters
            or handler.formatter is not self._formatter
            or self._formatter.processors != self._formatter_processors
        ):
            return False
        if not plain_json:
            return True
        variables = _STRUCTLOG_VARS
        return self._json and (
            variables is not None
            and (not variables or all(var.get() is Ellipsis for var in list(variables.values())))
        )

    def plain(self, keys: Sequence[str], values: Sequence[str]) -> bool:
        """Whether none of ``keys`` is a sensitive key name and the redactor leaves every one
        of ``values`` unchanged: what a caller with fixed keys and constant values checks once
        per ``DirectOutput`` (the answer does not change)."""
        processor = self._redacting
        return all(processor._plain_key(key) for key in keys) and all(
            self.jsonable(value) is not None for value in values
        )

    def jsonable(self, value: str) -> str | None:
        """``value`` as a JSON string (quotes included) if the redactor leaves it unchanged,
        else None. Values seen before come from a bounded cache (a masked value is never
        stored); values spelled only with characters no rule keyword uses are not scanned."""
        encoded = self.json_strings.get(value)
        if encoded is not None:
            return encoded
        redactor = self._redactor or self._resolve()
        if self._safe and not value.strip(self._safe):
            return f'"{value}"'  # nothing in the alphabet needs escaping
        if redactor.redact_text(value) != value:
            return None
        encoded = encode_basestring_ascii(value)
        if len(value) <= 256:
            if len(self.json_strings) >= 4096:
                self.json_strings.clear()
            self.json_strings[value] = encoded
        return encoded

    def _render(
        self,
        logger: logging.Logger,
        method_name: str,
        event: str,
        event_dict: dict[str, Any],
        traced: bool = False,
    ) -> str:
        event_dict["event"] = event
        variables = _STRUCTLOG_VARS
        if variables is None or (
            variables and any(var.get() is not Ellipsis for var in list(variables.values()))
        ):
            for processor in self._shared:  # bound context variables: the real processors
                event_dict = processor(logger, method_name, event_dict)
            event_dict.pop("_record", None)  # what ProcessorFormatter adds and then removes
            event_dict.pop("_from_structlog", None)
        else:  # the same steps, inline
            event_dict["logger"] = logger.name
            event_dict["level"] = method_name
            event_dict["timestamp"] = self.timestamp()
            request_id = request_id_var.get()
            if request_id is not None:
                event_dict.setdefault("request_id", request_id)
            if not traced and ("trace_id" not in event_dict or "span_id" not in event_dict):
                ids = trace_ids()
                if ids is not None:
                    event_dict.setdefault("trace_id", ids[0])
                    event_dict.setdefault("span_id", ids[1])
        if self._json:
            line = self._json_line(event_dict)
            if line is not None:
                return line
        redacted = self._redacting(logger, method_name, event_dict)
        return str(self._renderer(logger, method_name, redacted))

    def _json_line(self, event_dict: dict[str, Any]) -> str | None:
        """The JSON line when nothing needs masking and every value is a plain scalar
        (exactly ``json.dumps``' output for them); None to run the real processors."""
        keys = tuple(event_dict)
        shape = self._shapes.get(keys, _NO_SHAPE)
        if shape is _NO_SHAPE:
            shape = self._shape(keys, tuple(map(type, event_dict.values())))
        if shape is not None:
            values = tuple(event_dict.values())
            if tuple(map(type, values)) == shape.types:
                strings = shape.strings(values)
                joined = "".join(strings)
                # json's encoder adds only the two quotes: no string needs escaping
                if len(encode_basestring_ascii(joined)) == len(joined) + 2:
                    for i in shape.floats:
                        if not -_INF < values[i] < _INF:
                            return None
                    if not self._unchanged(strings):
                        return None
                    line: str = shape.json % values
                    return line
        return self._json_line_any(event_dict)

    def _shape(self, keys: tuple[Any, ...], types: tuple[type, ...]) -> _Shape | None:
        """The template of a layout whose keys are plain and values str/int/float, or None."""
        shape = None
        if (
            all(type(key) is str and self._redacting._plain_key(key) for key in keys)
            and all(kind in (str, int, float) for kind in types)
            and sum(kind is str for kind in types) >= 2
        ):
            shape = _Shape(keys, types)
        if len(self._shapes) < 256:
            self._shapes[keys] = shape
        return shape

    def _json_line_any(self, event_dict: dict[str, Any]) -> str | None:
        """:meth:`_json_line` for any event, one key at a time."""
        keys = self._keys
        encode = encode_basestring_ascii
        parts: list[str] = []
        strings: list[str] = []
        for key, value in event_dict.items():
            prefix = keys.get(key)
            if prefix is None:
                if type(key) is not str or not self._redacting._plain_key(key):
                    return None
                prefix = encode(key) + ": "
                if len(keys) < 4096:
                    keys[key] = prefix
            kind = type(value)
            if kind is str:
                strings.append(value)
                parts.append(prefix + encode(value))
            elif kind is int:
                parts.append(prefix + int.__repr__(value))
            elif kind is float:
                if not -_INF < value < _INF:
                    return None
                parts.append(prefix + float.__repr__(value))
            elif value is None:
                parts.append(prefix + "null")
            elif kind is bool:
                parts.append(prefix + ("true" if value else "false"))
            else:
                return None
        if not self._unchanged(strings):
            return None
        return "{" + ", ".join(parts) + "}"

    def _unchanged(self, strings: Any) -> bool:
        """Whether the redactor leaves every one of ``strings`` as it is."""
        jsonable = self.jsonable
        return all(jsonable(value) is not None for value in strings)

    def timestamp(self) -> str:
        """``TimeStamper(fmt="iso", utc=True)``'s format, the seconds part cached."""
        micros = time.time_ns() // 1000
        stamp = self._stamp
        if not stamp[0] <= micros < stamp[0] + 1_000_000:
            stamp = self._stamp = self._new_second(micros)
        fraction = str(micros)[-6:]  # the microseconds, zero-padded
        return f"{stamp[1]}Z" if fraction == "000000" else f"{stamp[1]}.{fraction}Z"

    def _new_second(self, micros: int) -> tuple[int, str]:
        """The second ``micros`` (microseconds since the epoch) falls in: its first
        microsecond and its ISO text."""
        seconds = micros // 1_000_000
        return seconds * 1_000_000, iso_second(seconds)

    def leaves_safe_alphabet(self) -> bool:
        """Whether the redactor provably leaves strings of digits, lower-case hex letters and
        ``-:.TZ`` unchanged (timestamps, request ids this package makes)."""
        if self._redactor is None:
            self._resolve()
        return bool(self._safe)

    def _resolve(self) -> Redactor:
        """The processor's redactor, and whether it leaves the safe alphabet alone."""
        redactor = self._redactor = self._redacting.redactor
        self._safe = _SAFE_ALPHABET if redactor.leaves_alphabet(_SAFE_ALPHABET) else ""
        return redactor

    def emit(self, logger: logging.Logger, levelno: int, line: str) -> None:
        """Write a formatted line as ``Handler.handle`` and ``StreamHandler.emit``/``flush``
        would (under the handler's lock, flushed, errors to ``handleError``)."""
        handler = self._handler
        with handler.lock:  # type: ignore[union-attr]
            try:
                stream = handler.stream
                stream.write(line + handler.terminator)
                if stream and hasattr(stream, "flush"):
                    stream.flush()
            except RecursionError:  # pragma: no cover - as logging.StreamHandler
                raise
            except Exception:
                record = logging.LogRecord(logger.name, levelno, "", 0, line, None, None)
                handler.handleError(record)
