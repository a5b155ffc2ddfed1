"""The producer client: enqueue jobs and follow them. Needs only `redis` (never the worker's parts).

async with Client("redis://localhost:6379/0") as jobs:    # or Client.from_config("jobs.toml")
    job = await jobs.enqueue("send_email", "a@example.com", subject="Hi")
    print(await job.result(timeout=10))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio

from jobd.client.coalesce import Coalescer, coalescible
from jobd.client.events import KEEPALIVE_SECONDS, sse_message
from jobd.client.flows import Flow, HasRef
from jobd.client.limits import LimitHold
from jobd.client.operations import (
    Command,
    Deliver,
    Operation,
    Pause,
    Request,
    ScriptBatch,
    ScriptCall,
)
from jobd.client.producer import Call, Handle, Producer, options_from_config
from jobd.events import JobEvent
from jobd.model import JobInfo, JobStatus
from jobd.redis.connect import connection_options, open_async
from jobd.redis.scripts import run_async, run_async_many, run_async_replicated
from jobd.serializer import DEFAULT_MAX_BYTES


class Client(Producer):
    """Async producer client. Use as `async with Client(url) as jobs:` or call `close()`."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        key_prefix: str = "jobd",
        default_queue: str = "default",
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        redis_client: redis.asyncio.Redis | None = None,
        signing_key: str | bytes | None = None,
        enqueue_durability: str = "primary",
        replica_timeout: float = 1.0,
        tracing: bool = True,
        tracer_provider: Any = None,
        encryption_keys: Iterable[str | bytes] | str | None = None,
        coalesce: bool = True,
    ) -> None:
        """`signing_key` signs every job (jobd.signing); None: the key in the environment variable
        JOBD_SIGNING_KEY, if it is set. `encryption_keys` (URL-safe base64, `jobd keygen`)
        encrypt each job's arguments with the first key and decrypt what the client reads with
        any of them (docs/encryption.md; needs `jobd[crypto]`); None: the comma-separated keys of
        JOBD_ENCRYPTION_KEYS, if it is set; [] turns encryption off. Enqueues are `send` spans
        when OpenTelemetry is installed (of `tracer_provider`, default the global one);
        `tracing=False` makes none (docs/tracing.md). `coalesce=False` sends every `enqueue` as a
        script call of its own instead of coalescing concurrent ones
        (docs/guides/concurrent-enqueues.md)."""
        super().__init__(
            url, key_prefix=key_prefix, default_queue=default_queue,
            max_payload_bytes=max_payload_bytes, signing_key=signing_key,
            enqueue_durability=enqueue_durability, replica_timeout=replica_timeout,
            tracing=tracing, tracer_provider=tracer_provider, encryption_keys=encryption_keys,
        )  # fmt: skip
        self._owns_redis = redis_client is None
        self._coalescer = Coalescer(self._perform) if coalesce else None
        self.redis = redis_client or open_async(
            url, **connection_options(socket_timeout, connect_timeout)
        )

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **options: Any) -> Client:
        """A client for the Redis of the worker's `jobs.toml` at `path`, with its key prefix,
        timeouts and payload limit; `options` override them (e.g. `default_queue="high"`).

        With `redis.url = "embedded"` it connects to the server the running worker started
        (RedisUnavailable if none runs). Reads the file with tomllib; loads no worker parts."""
        return cls(**{**options_from_config(path), **options})

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._coalescer is not None:
            await self._coalescer.wait_idle()
        if self._owns_redis:
            await self.redis.aclose()

    async def run(self, operation: Operation, *, coalesce: bool = False) -> Any:
        """Drive a sans-IO operation from jobd.client.operations against Redis. With `coalesce`,
        its enqueue script call may share one call with concurrent ones (jobd.client.coalesce)."""
        coalescer = self._coalescer if coalesce else None
        try:
            request = next(operation)
            while True:
                try:
                    if coalescer and type(request) is ScriptCall and coalescible(request):
                        reply = await coalescer.call(request)
                    else:
                        reply = await self._perform(request)
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(self.translate(error))
                else:
                    request = operation.send(reply)
        except StopIteration as stop:
            return stop.value

    async def stream(self, operation: Operation) -> AsyncGenerator[Any, None]:
        """Drive a streaming operation: yields what it delivers (jobd.client.events)."""
        try:
            request = next(operation)
            while True:
                if isinstance(request, Deliver):
                    for item in request.items:
                        yield item
                    request = operation.send(None)
                    continue
                try:
                    reply = await self._perform(request)
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(self.translate(error))
                else:
                    request = operation.send(reply)
        except StopIteration:
            return
        finally:
            operation.close()

    async def _perform(self, request: Request) -> Any:
        """Perform one request of an operation; its reply."""
        if isinstance(request, ScriptCall) and request.durable and self.wait_replicas:
            return await run_async_replicated(
                self.redis, request.name, request.keys, request.args,
                self.wait_replicas, self.replica_timeout_ms,
            )  # fmt: skip
        if isinstance(request, ScriptCall):
            return await run_async(self.redis, request.name, request.keys, request.args)
        if isinstance(request, ScriptBatch):
            return await run_async_many(self.redis, request.name, request.calls)
        if isinstance(request, Pause):
            await asyncio.sleep(request.seconds)
            return None
        if isinstance(request, Command):
            return await self.redis.execute_command(*request.args)  # type: ignore[no-untyped-call]
        raise TypeError(f"{type(request).__name__} is not a request Client.run performs")

    async def enqueue(
        self,
        function: str,
        /,
        *args: Any,
        queue: str | None = None,
        job_id: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        max_tries: int | None = None,
        timeout: float | timedelta | None = None,
        expires: float | timedelta | None = None,
        group: str | None = None,
        cost: int | None = None,
        after: Iterable[HasRef | str] | None = None,
        after_failure: str = "fail",
        strict: bool = False,
        **kwargs: Any,
    ) -> Job:
        """Store a job; returns once it is in Redis. With an existing `job_id`, nothing is created
        and the handle of the existing job is returned (`job.created` is False).

        `after=[job, ...]`: the job waits (JobStatus.WAITING) until every parent ended (handles of
        any queue, or ids of jobs of its queue; InvalidJobOption for one that does not exist).
        `after_failure="fail"` dead-letters it if a parent failed or was aborted; "run" runs it
        anyway (docs/workflows.md).

        Calls made while an equal one (same queue and options) is in flight are sent together in
        one script call when it returns; each caller still gets its own job or its own error
        (docs/guides/concurrent-enqueues.md)."""
        operation = self.enqueue_operation(
            [(function, args, kwargs)], [job_id], queue=queue, delay=delay, at=at,
            priority=priority, max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict, after=after, after_failure=after_failure,
        )  # fmt: skip
        (ref,) = await self.run(operation, coalesce=True)
        return Job(self, ref)

    async def enqueue_many(
        self,
        calls: Iterable[Call],
        *,
        queue: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        max_tries: int | None = None,
        timeout: float | timedelta | None = None,
        expires: float | timedelta | None = None,
        group: str | None = None,
        cost: int | None = None,
        after: Iterable[HasRef | str] | None = None,
        after_failure: str = "fail",
        strict: bool = False,
    ) -> list[Job]:
        """Store many `(function, args, kwargs)` calls of one queue in one round trip."""
        calls = list(calls)
        if not calls:
            return []
        operation = self.enqueue_operation(
            calls, queue=queue, delay=delay, at=at, priority=priority, max_tries=max_tries,
            timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict, after=after, after_failure=after_failure,
        )  # fmt: skip
        return [Job(self, ref) for ref in await self.run(operation)]

    def limit(
        self,
        name: str,
        *,
        cost: int = 1,
        group: str | None = None,
        timeout: float | None = 60.0,
        hold: float = 60.0,
    ) -> LimitHold:
        """`async with client.limit("openai", cost=800): ...` waits until the fleet's limit
        `name` allows one start of `cost` (TimeoutError after `timeout` seconds), and holds one
        of its concurrency slots while inside (renewed every `hold` / 3 seconds; a process that
        dies inside lets it lapse after `hold`). See jobd.client.limits."""
        return LimitHold(
            self.run, self.key_prefix, name, cost=cost, group=group, timeout=timeout, hold=hold
        )

    def job(self, job_id: str, *, queue: str | None = None) -> Job:
        """A handle to an existing job (no round trip)."""
        return Job(self, self.ref(job_id, queue))

    def flow(self) -> AsyncFlow:
        """`async with client.flow() as flow:` then `a = flow.enqueue(...)` and
        `flow.enqueue(..., after=[a])`: a graph of jobs of any shape, stored when the block
        ends, every job or none (an exception in the block stores nothing), and none starts
        before all are stored."""
        return AsyncFlow(self, Job)


class Job(Handle):
    """Handle to one job: its status, result, info, and abort."""

    _producer: Client

    async def status(self) -> JobStatus:
        status: JobStatus = await self._producer.run(self._status())
        return status

    async def info(self) -> JobInfo | None:
        """Everything stored about the job, or None when it does not exist."""
        info: JobInfo | None = await self._producer.run(self._info())
        return info

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result.

        Raises JobFailed, JobAborted, JobNotFound, or TimeoutError after `timeout` seconds;
        DecryptError for an encrypted result whose key this client lacks (docs/encryption.md).
        """
        return await self._producer.run(self._result(timeout))

    def events(self, after: str | None = None) -> AsyncGenerator[JobEvent, None]:
        """`async for event in job.events():` the job's events in order (JobEvent: id, event,
        data, time): from the start of its stream, or after the event id `after`; live as they
        are emitted; ending after the job's end event ("succeeded", "failed" or "aborted").

        The worker adds lifecycle events: "started" (data: try), "retrying" (try, error,
        message, delay), and the end. Events dropped before they were read (the stream's cap)
        come as one "dropped" event (data: count). JobNotFound if the job does not exist;
        InvalidJobOption at once for an `after` that is not an event id."""
        return self._producer.stream(self._follow(after, "after", None))

    def sse(
        self, last_event_id: str | None = None, *, keepalive: float = KEEPALIVE_SECONDS
    ) -> AsyncGenerator[bytes, None]:
        """The job's events as a `text/event-stream` body (`id:`, `event:`, `data:` lines, JSON
        data; a comment after `keepalive` quiet seconds), for Starlette's and FastAPI's
        `StreamingResponse(job.sse(request.headers.get("last-event-id")),
        media_type="text/event-stream")`: a browser's EventSource that reconnects sends the last
        id it got and receives every later event once. See `events` for what comes and when
        the stream ends."""
        operation = self._follow(last_event_id, "last_event_id", keepalive)
        return _sse(self._producer.stream(operation))

    async def abort(self, timeout: float = 2.0) -> bool:
        """Abort the job. True if it will not run, or if it was running and was cancelled within
        `timeout` seconds; False if it had already ended (or still runs after `timeout`)."""
        aborted: bool = await self._producer.run(self._abort(timeout))
        return aborted


class AsyncFlow(Flow[Job]):
    """A graph of jobs stored when its `async with` block ends (see Client.flow)."""

    async def __aenter__(self) -> AsyncFlow:
        return self

    async def __aexit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        if error_type is None and self._jobs:
            self.stored(await self._producer.run(self.operation()))


async def _sse(events: AsyncGenerator[JobEvent | None, None]) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(events):
        async for event in events:
            yield sse_message(event)


__all__ = ["Client", "Job", "JobEvent", "JobInfo", "JobStatus"]
