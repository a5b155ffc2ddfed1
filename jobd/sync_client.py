"""The producer client for synchronous code (Django, Flask, scripts): the same operations as
`jobd.client.Client`, driven by a blocking redis-py client."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import redis

from jobd import commands
from jobd.client import Call, connection_options, redact_url, translate_error
from jobd.commands import JobRef, Operation, ScriptCall
from jobd.model import JobInfo, JobStatus
from jobd.scripts import run_sync
from jobd.serializer import DEFAULT_MAX_BYTES, JsonSerializer, Serializer


class SyncClient:
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
    ) -> None:
        self.key_prefix = commands.check_queue(key_prefix)
        self.default_queue = commands.check_queue(default_queue)
        self.serializer: Serializer = JsonSerializer(max_payload_bytes)
        self._url_text = redact_url(url)
        self._owns_redis = redis_client is None
        options = connection_options(socket_timeout, connect_timeout)
        options["retry"] = redis.retry.Retry(options["retry"]._backoff, 3)
        self.redis = redis_client or redis.Redis.from_url(url, **options)

    def __repr__(self) -> str:
        return f"SyncClient({self._url_text!r}, key_prefix={self.key_prefix!r})"

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_redis:
            self.redis.close()

    def run(self, operation: Operation) -> Any:
        """Drive a sans-IO operation from jobd.commands against Redis."""
        try:
            request = next(operation)
            while True:
                try:
                    if isinstance(request, ScriptCall):
                        reply = run_sync(self.redis, request.name, request.keys, request.args)
                    else:
                        reply = self.redis.execute_command(*request.args)  # type: ignore[no-untyped-call]
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(translate_error(error, self._url_text))
                else:
                    request = operation.send(reply)
        except StopIteration as stop:
            return stop.value

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
        strict: bool = False,
        **kwargs: Any,
    ) -> SyncJob:
        """Store a job; see `jobd.client.Client.enqueue`."""
        options = commands.enqueue_options(
            queue=queue or self.default_queue,
            delay=delay,
            at=at,
            priority=priority,
            max_tries=max_tries,
            timeout=timeout,
            expires=expires,
        )
        refs = self.run(
            commands.enqueue(
                self.key_prefix,
                options,
                [(function, args, kwargs)],
                self.serializer,
                job_ids=[job_id],
                strict=strict,
            )
        )
        return SyncJob(self, refs[0])

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
        strict: bool = False,
    ) -> list[SyncJob]:
        """Store many calls in one round trip; see `jobd.client.Client.enqueue_many`."""
        options = commands.enqueue_options(
            queue=queue or self.default_queue,
            delay=delay,
            at=at,
            priority=priority,
            max_tries=max_tries,
            timeout=timeout,
            expires=expires,
        )
        calls = [(name, tuple(args), dict(kwargs)) for name, args, kwargs in calls]
        if not calls:
            return []
        refs = self.run(
            commands.enqueue(self.key_prefix, options, calls, self.serializer, strict=strict)
        )
        return [SyncJob(self, ref) for ref in refs]

    def job(self, job_id: str, *, queue: str | None = None) -> SyncJob:
        """A handle to an existing job (no round trip)."""
        ref = JobRef(
            commands.check_job_id(job_id), commands.check_queue(queue or self.default_queue)
        )
        return SyncJob(self, ref)


class SyncJob:
    """Blocking handle to one job; see `jobd.client.Job`."""

    def __init__(self, client: SyncClient, ref: JobRef) -> None:
        self._client = client
        self._ref = ref

    @property
    def id(self) -> str:
        return self._ref.id

    @property
    def queue(self) -> str:
        return self._ref.queue

    @property
    def created(self) -> bool:
        return self._ref.created

    def __repr__(self) -> str:
        return f"SyncJob(id={self.id!r}, queue={self.queue!r})"

    def status(self) -> JobStatus:
        status: JobStatus = self._client.run(commands.status(self._client.key_prefix, self._ref))
        return status

    def info(self) -> JobInfo | None:
        client = self._client
        info: JobInfo | None = client.run(
            commands.info(client.key_prefix, self._ref, client.serializer)
        )
        return info

    def result(self, timeout: float | None = None) -> Any:
        client = self._client
        return client.run(commands.result(client.key_prefix, self._ref, client.serializer, timeout))

    def abort(self, timeout: float = 2.0) -> bool:
        aborted: bool = self._client.run(
            commands.abort(self._client.key_prefix, self._ref, timeout)
        )
        return aborted
