"""OpenTelemetry: span attributes and event attributes masked before export.

Usage::

    from launchguard.integrations.otel import RedactingSpanExporter

    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(OTLPSpanExporter())))

A span is frozen by the time processors see its end, so the masking happens at export: each
span is copied with its attributes (and its events' attributes) masked, by key name and value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._extras import MissingExtraError

try:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtraError("opentelemetry-sdk", "otel") from exc

from ..redact import Redactor, default_redactor

__all__ = ["RedactingSpanExporter", "redact_span"]


def _attributes(values: Mapping[str, Any] | None, redactor: Redactor) -> dict[str, Any] | None:
    if not values:
        return dict(values) if values is not None else None
    masked = redactor.redact_value(dict(values))
    return masked if isinstance(masked, dict) else {}


def redact_span(span: ReadableSpan, redactor: Redactor | None = None) -> ReadableSpan:
    """A copy of ``span`` with its attributes and event attributes masked."""
    redactor = redactor or default_redactor()
    events = [
        Event(event.name, _attributes(event.attributes, redactor), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=redactor.redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes, redactor),
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter: every span it exports is masked first."""

    def __init__(self, exporter: SpanExporter, redactor: Redactor | None = None) -> None:
        self._exporter = exporter
        self._redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redact_span(span, self._redactor) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)
