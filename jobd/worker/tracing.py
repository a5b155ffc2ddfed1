"""The worker's spans (OpenTelemetry), imported only when `[tracing] enabled = true`: one
`process <queue>` span (kind CONSUMER) per try, child of the producer's `send` span whose context
the job carries in its headers, and linked to it; the try's outcome, an exception event on
failure, retries and throttling as span events. The span is the current one while the job runs,
so spans the job makes are its children and log lines carry its ids. See docs/tracing.md."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from jobd import __version__
from jobd.model import ErrorInfo
from jobd.redis.graph import parents_of
from jobd.redis.keys import QueueKeys, member_text
from jobd.worker.runner import ClaimedJob

FAILED_OUTCOMES = frozenset({"failed", "timed_out"})


@dataclass(slots=True)
class TrySpan:
    """The span of one try, and the context token that makes it current."""

    span: Any
    token: object
    outcome: str | None = None


def _headers(job: ClaimedJob) -> dict[str, str]:
    if not job.headers:
        return {}
    try:
        value = json.loads(job.headers)
    except ValueError:
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


class JobTracer:
    """Makes the spans of the tries this worker runs."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        """`client` and `prefix`: where workflow jobs keep their spans' contexts."""
        self.tracer = trace.get_tracer("jobd", __version__)
        self.redis = client
        self.prefix = prefix

    async def start_try(self, job: ClaimedJob, claimed_at_ms: int) -> TrySpan:
        """`start`, and for a job of a workflow: link its parents' spans (their 'trace' field:
        each parent's last try, stored when it ended). A Redis error there costs the links,
        never the job. The span's traceparent goes with the job's outcome (finish.lua)."""
        if not job.links:
            try_span = self.start(job, claimed_at_ms)
            job.traceparent = self.traceparent(try_span) or ""
            return try_span
        keys = QueueKeys(self.prefix, job.queue)
        parents: list[str] = []
        try:
            parent_refs = parents_of(await self.redis.hget(keys.job(job.id), "parents"))
            if parent_refs:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for queue, parent_id in parent_refs:
                        pipe.hget(QueueKeys(self.prefix, queue).job(parent_id), "trace")
                    parents = [member_text(v) for v in await pipe.execute() if v]
        except (redis.RedisError, OSError):
            parents = []
        try_span = self.start(job, claimed_at_ms, parents)
        job.traceparent = self.traceparent(try_span) or ""
        return try_span

    def start(self, job: ClaimedJob, claimed_at_ms: int, parents: Sequence[str] = ()) -> TrySpan:
        """Start the try's span and make it current (in the job's own task). `parents`: the
        traceparents of a workflow job's parents' spans, linked."""
        producer = propagate.extract(_headers(job))
        links = []
        sent = trace.get_current_span(producer).get_span_context()
        if sent.is_valid:
            links.append(Link(sent, {"jobd.link": "send"}))
        for traceparent in parents:
            parent = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
            if parent.get_span_context().is_valid:
                links.append(Link(parent.get_span_context(), {"jobd.link": "parent"}))
        attributes: dict[str, Any] = {
            "messaging.system": "jobd",
            "messaging.destination.name": job.queue,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": job.id,
            "jobd.function": job.function,
            "jobd.try": job.tries,
        }
        if job.due_at_ms and claimed_at_ms:
            attributes["jobd.queue_wait_ms"] = max(0, claimed_at_ms - job.due_at_ms)
        span = self.tracer.start_span(
            f"process {job.queue}",
            context=producer,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return TrySpan(span, token)

    @staticmethod
    def traceparent(try_span: TrySpan) -> str | None:
        """The span's context as a W3C traceparent (kept on a workflow job for its dependants)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(try_span.span))
        return carrier.get("traceparent")

    @staticmethod
    def error(try_span: TrySpan, error: ErrorInfo) -> None:
        """The try raised: an exception event, as the semantic conventions describe it."""
        try_span.span.add_event(
            "exception",
            {
                "exception.type": error.type,
                "exception.message": error.message,
                "exception.stacktrace": error.traceback,
            },
        )

    @staticmethod
    def event(try_span: TrySpan, name: str, attributes: dict[str, Any]) -> None:
        try_span.span.add_event(name, attributes)

    @staticmethod
    def outcome(try_span: TrySpan, outcome: str) -> None:
        """How the try ended: succeeded, retried, failed, timed_out, aborted, throttled, lost,
        requeued."""
        try_span.outcome = outcome
        try_span.span.set_attribute("jobd.outcome", outcome)
        if outcome in FAILED_OUTCOMES:
            try_span.span.set_status(Status(StatusCode.ERROR, outcome))

    @staticmethod
    def end(try_span: TrySpan) -> None:
        """End the span (always: drained, timed out, aborted or lost) and its currency."""
        if try_span.outcome is None:
            try_span.span.set_attribute("jobd.outcome", "unknown")
        try_span.span.end()
        otel_context.detach(try_span.token)  # type: ignore[arg-type]


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` to log lines written while a span is current (shown by
    `--log-format json`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def install_log_ids() -> None:
    """Put TraceIds on the handlers of the root logger (jobd.ops.logs set them up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TraceIds) for f in handler.filters):
            handler.addFilter(TraceIds())
