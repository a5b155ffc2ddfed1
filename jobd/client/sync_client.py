"""The producer client for synchronous code (Django, Flask, scripts): the same operations as
`jobd.client.Client`, driven by a blocking redis-py client."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import redis
import redis.retry

from jobd.client.events import KEEPALIVE_SECONDS, sse_message
from jobd.client.flows import Flow, HasRef
from jobd.client.limits import SyncLimitHold
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
from jobd.redis.connect import RETRY_ATTEMPTS, connection_options, open_sync, retry_backoff
from jobd.redis.scripts import run_sync, run_sync_many, run_sync_replicated
from jobd.serializer import DEFAULT_MAX_BYTES


class SyncClient(Producer):
    """Blocking producer client. Use as `with SyncClient(url) as jobs:` or call `close()`."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        key_prefix: str = "jobd",
        default_queue: str = "default",
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        redis_client: redis.Redis | None = None,
        signing_key: str | bytes | None = None,
        enqueue_durability: str = "primary",
        replica_timeout: float = 1.0,
        tracing: bool = True,
        tracer_provider: Any = None,
        encryption_keys: Iterable[str | bytes] | str | None = None,
    ) -> None:
        """`signing_key` signs every job (jobd.signing); None: the key in the environment variable
        JOBD_SIGNING_KEY, if it is set. `encryption_keys` (URL-safe base64, `jobd keygen`)
        encrypt each job's arguments with the first key and decrypt what the client reads with
        any of them (docs/encryption.md; needs `jobd[crypto]`); None: the comma-separated keys of
        JOBD_ENCRYPTION_KEYS, if it is set; [] turns encryption off. Enqueues are `send` spans
        when OpenTelemetry is installed (of `tracer_provider`, default the global one);
        `tracing=False` makes none (docs/tracing.md)."""
        super().__init__(
            url, key_prefix=key_prefix, default_queue=default_queue,
            max_payload_bytes=max_payload_bytes, signing_key=signing_key,
            enqueue_durability=enqueue_durability, replica_timeout=replica_timeout,
            tracing=tracing, tracer_provider=tracer_provider, encryption_keys=encryption_keys,
        )  # fmt: skip
        self._owns_redis = redis_client is None
        options = connection_options(socket_timeout, connect_timeout)
        options["retry"] = redis.retry.Retry(retry_backoff(), RETRY_ATTEMPTS)
        self.redis = redis_client or open_sync(url, **options)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **options: Any) -> SyncClient:
        """A client for the Redis of the worker's `jobs.toml`; see `Client.from_config`."""
        return cls(**{**options_from_config(path), **options})

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_redis:
            self.redis.close()

    def run(self, operation: Operation) -> Any:
        """Drive a sans-IO operation from jobd.client.operations against Redis."""
        try:
            request = next(operation)
            while True:
                try:
                    reply = self._perform(request)
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(self.translate(error))
                else:
                    request = operation.send(reply)
        except StopIteration as stop:
            return stop.value

    def stream(self, operation: Operation) -> Generator[Any, None, None]:
        """Drive a streaming operation: yields what it delivers (jobd.client.events)."""
        try:
            request = next(operation)
            while True:
                if isinstance(request, Deliver):
                    yield from request.items
                    request = operation.send(None)
                    continue
                try:
                    reply = self._perform(request)
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(self.translate(error))
                else:
                    request = operation.send(reply)
        except StopIteration:
            return
        finally:
            operation.close()

    def _perform(self, request: Request) -> Any:
        """Perform one request of an operation; its reply."""
        if isinstance(request, ScriptCall) and request.durable and self.wait_replicas:
            return run_sync_replicated(
                self.redis, request.name, request.keys, request.args,
                self.wait_replicas, self.replica_timeout_ms,
            )  # fmt: skip
        if isinstance(request, ScriptCall):
            return run_sync(self.redis, request.name, request.keys, request.args)
        if isinstance(request, ScriptBatch):
            return run_sync_many(self.redis, request.name, request.calls)
        if isinstance(request, Pause):
            time.sleep(request.seconds)
            return None
        if isinstance(request, Command):
            return self.redis.execute_command(*request.args)  # type: ignore[no-untyped-call]
        raise TypeError(f"{type(request).__name__} is not a request SyncClient.run performs")

    def enqueue(
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
    ) -> SyncJob:
        """Store a job; see `jobd.client.Client.enqueue`."""
        operation = self.enqueue_operation(
            [(function, args, kwargs)], [job_id], queue=queue, delay=delay, at=at,
            priority=priority, max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict, after=after, after_failure=after_failure,
        )  # fmt: skip
        (ref,) = self.run(operation)
        return SyncJob(self, ref)

    def enqueue_many(
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
    ) -> list[SyncJob]:
        """Store many calls in one round trip; see `jobd.client.Client.enqueue_many`."""
        calls = list(calls)
        if not calls:
            return []
        operation = self.enqueue_operation(
            calls, queue=queue, delay=delay, at=at, priority=priority, max_tries=max_tries,
            timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict, after=after, after_failure=after_failure,
        )  # fmt: skip
        return [SyncJob(self, ref) for ref in self.run(operation)]

    def limit(
        self,
        name: str,
        *,
        cost: int = 1,
        group: str | None = None,
        timeout: float | None = 60.0,
        hold: float = 60.0,
    ) -> SyncLimitHold:
        """`with client.limit("openai", cost=800): ...`: see Client.limit; a thread renews the
        slot while the block runs."""
        return SyncLimitHold(
            self.run, self.key_prefix, name, cost=cost, group=group, timeout=timeout, hold=hold
        )

    def job(self, job_id: str, *, queue: str | None = None) -> SyncJob:
        """A handle to an existing job (no round trip)."""
        return SyncJob(self, self.ref(job_id, queue))

    def flow(self) -> SyncFlow:
        """`with client.flow() as flow:`: a graph of jobs stored when the block ends; see
        `Client.flow`."""
        return SyncFlow(self, SyncJob)


class SyncJob(Handle):
    """Blocking handle to one job; see `jobd.client.Job`."""

    _producer: SyncClient

    def status(self) -> JobStatus:
        status: JobStatus = self._producer.run(self._status())
        return status

    def info(self) -> JobInfo | None:
        info: JobInfo | None = self._producer.run(self._info())
        return info

    def result(self, timeout: float | None = None) -> Any:
        return self._producer.run(self._result(timeout))

    def events(self, after: str | None = None) -> Generator[JobEvent, None, None]:
        """`for event in job.events():` as `Job.events`, blocking."""
        return self._producer.stream(self._follow(after, "after", None))

    def sse(
        self, last_event_id: str | None = None, *, keepalive: float = KEEPALIVE_SECONDS
    ) -> Iterator[bytes]:
        """The `text/event-stream` body of `Job.sse`, for a WSGI app's streaming response."""
        operation = self._follow(last_event_id, "last_event_id", keepalive)
        return map(sse_message, self._producer.stream(operation))

    def abort(self, timeout: float = 2.0) -> bool:
        aborted: bool = self._producer.run(self._abort(timeout))
        return aborted


class SyncFlow(Flow[SyncJob]):
    """A graph of jobs stored when its `with` block ends (see SyncClient.flow)."""

    def __enter__(self) -> SyncFlow:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        if error_type is None and self._jobs:
            self.stored(self._producer.run(self.operation()))
