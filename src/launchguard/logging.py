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
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import IO, Any

import structlog

from .context import request_id_var, trace_ids
from .redact import Redactor, default_redactor

__all__ = [
    "RedactingFilter",
    "RedactingProcessor",
    "RequestContextFilter",
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
        keys = self._sensitive_keys
        parts = []
        for key, value in event_dict.items():
            if type(key) is not str:
                return False
            sensitive = keys.get(key)
            if sensitive is None:
                sensitive = redactor.is_sensitive_key(key)
                if len(keys) < 4096:
                    keys[key] = sensitive
            if sensitive:
                return False
            parts.append(key)
            kind = type(value)
            if kind is str:
                parts.append(value)
            elif value is not None and kind not in (int, float, bool):
                return False
        text = "\n".join(parts)
        return redactor.redact_text(text) == text


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


def configure(
    *,
    json: bool | None = None,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
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
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
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
