"""The producer's `send` span is skipped only where it would record and carry nothing
(jobd.client.tracing.inert): no tracer provider set and an empty current context."""

from __future__ import annotations

import json

from opentelemetry import baggage, context, trace

from jobd.client import tracing

PARENT = trace.SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=trace.TraceFlags(1),
)


def global_tracer() -> object:
    assert type(trace.get_tracer_provider()) is trace.ProxyTracerProvider  # none set here
    return tracing.tracer_for(True)


def test_no_provider_and_an_empty_context_make_no_span() -> None:
    tracer = global_tracer()
    assert tracing.inert(tracer)
    assert tracing.start_send(tracer, "default", ["a"], ["f"]) is None


def test_a_span_context_in_the_current_context_still_travels() -> None:
    """Without a provider, the no-op tracer's span carries the incoming request's context."""
    tracer = global_tracer()
    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(PARENT)))
    try:
        assert not tracing.inert(tracer)
        send = tracing.start_send(tracer, "default", ["a"], ["f"])
    finally:
        context.detach(token)
    assert send is not None
    headers = json.loads(send.headers)
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_baggage_in_the_current_context_still_travels() -> None:
    tracer = global_tracer()
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        assert not tracing.inert(tracer)
        send = tracing.start_send(tracer, "default", ["a"], ["f"])
    finally:
        context.detach(token)
    assert send is not None and json.loads(send.headers) == {"baggage": "tenant=acme"}
