"""Producer spans (OpenTelemetry), when it is installed and the client's `tracing` is on: a
`send <queue>` span (kind PRODUCER) around each enqueue, following the messaging semantic
conventions, whose context travels in the job's headers (W3C `traceparent`, `tracestate`,
`baggage`) to the worker's `process <queue>` span (jobd.worker.tracing). See docs/tracing.md.

OpenTelemetry is imported on the first enqueue, and only if it is installed: without it, or with
`tracing=False`, an enqueue pays one `is None` test. Without a tracer provider set by the
application, the API's no-op tracer makes spans that record nothing and inject nothing."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HEADER_NAMES = ("traceparent", "tracestate", "baggage")
"""What a job's headers may carry (anything else the propagators inject is left out)."""
MAX_HEADERS_BYTES = 2048
"""Headers above this drop baggage, then tracestate: tracing never fails an enqueue."""


@functools.cache
def installed() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None


def tracer_for(enabled: bool, provider: Any = None) -> Any | None:
    """The tracer of jobd's producer spans, from `provider` (default: the global one), or None
    (tracing off, or OpenTelemetry absent)."""
    if not enabled or not installed():
        return None
    from opentelemetry import trace

    from jobd import __version__

    return trace.get_tracer("jobd", __version__, tracer_provider=provider)


@dataclass(slots=True)
class SendSpan:
    """A `send` span and the headers that carry its context."""

    span: Any
    headers: bytes


def encode_headers(carrier: dict[str, str]) -> bytes:
    """The headers as stored: compact JSON of the known names, within MAX_HEADERS_BYTES."""
    headers = {name: carrier[name] for name in HEADER_NAMES if name in carrier}
    for dropped in ("baggage", "tracestate", "traceparent"):
        data = json.dumps(headers, separators=(",", ":")).encode() if headers else b""
        if len(data) <= MAX_HEADERS_BYTES:
            return data
        headers.pop(dropped, None)
    return b""


def inert(tracer: Any) -> bool:
    """True when a `send` span of `tracer` would record nothing and its headers would be empty:
    the global tracer while the application has set no tracer provider, and nothing in the
    current context (no span context, say one extracted from an incoming request, no baggage).
    Then the span and its propagation are skipped: a third of an enqueue's CPU in the client."""
    from opentelemetry import context, trace

    return (
        type(tracer) is trace.ProxyTracer
        and not context.get_current()
        and type(trace.get_tracer_provider()) is trace.ProxyTracerProvider
    )


def start_send(
    tracer: Any, queue: str, job_ids: Sequence[str], functions: Sequence[str]
) -> SendSpan | None:
    """Start the `send` span of one enqueue call (a batch is one span); None when `inert`."""
    from opentelemetry import propagate, trace

    if inert(tracer):
        return None

    attributes: dict[str, Any] = {
        "messaging.system": "jobd",
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if len(job_ids) == 1:
        attributes["messaging.message.id"] = job_ids[0]
    else:
        attributes["messaging.batch.message_count"] = len(job_ids)
    names = sorted(set(functions))
    attributes["jobd.function"] = names[0] if len(names) == 1 else ",".join(names)
    span = tracer.start_span(f"send {queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return SendSpan(span, encode_headers(carrier))


def end_send(send: SendSpan | None, error: BaseException | None = None) -> None:
    """End the span; with `error`, recorded on it."""
    if send is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        send.span.record_exception(error)
        send.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    send.span.end()
