"""The producer client for synchronous code (Django, Flask, scripts): the same operations as
`jobd.client.Client`, driven by a blocking redis-py client."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import redis
import redis.retry

from jobd.client.limits import SyncLimitHold
from jobd.client.operations import Operation, Pause, ScriptCall
from jobd.client.producer import Call, Handle, Producer, options_from_config
from jobd.model import JobInfo, JobStatus
from jobd.redis.connect import RETRY_ATTEMPTS, connection_options, open_sync, retry_backoff
from jobd.redis.scripts import run_sync, run_sync_replicated
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
    ) -> None:
        """`signing_key` signs every job (jobd.signing); None: the key in the environment variable
        JOBD_SIGNING_KEY, if it is set."""
        super().__init__(
            url, key_prefix=key_prefix, default_queue=default_queue,
            max_payload_bytes=max_payload_bytes, signing_key=signing_key,
            enqueue_durability=enqueue_durability, replica_timeout=replica_timeout,
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
                    if isinstance(request, ScriptCall) and request.durable and self.wait_replicas:
                        reply = run_sync_replicated(
                            self.redis, request.name, request.keys, request.args,
                            self.wait_replicas, self.replica_timeout_ms,
                        )  # fmt: skip
                    elif isinstance(request, ScriptCall):
                        reply = run_sync(self.redis, request.name, request.keys, request.args)
                    elif isinstance(request, Pause):
                        time.sleep(request.seconds)
                        reply = None
                    else:
                        reply = self.redis.execute_command(*request.args)  # type: ignore[no-untyped-call]
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(self.translate(error))
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
        group: str | None = None,
        cost: int | None = None,
        strict: bool = False,
        **kwargs: Any,
    ) -> SyncJob:
        """Store a job; see `jobd.client.Client.enqueue`."""
        operation = self.enqueue_operation(
            [(function, args, kwargs)], [job_id], queue=queue, delay=delay, at=at,
            priority=priority, max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict,
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
        strict: bool = False,
    ) -> list[SyncJob]:
        """Store many calls in one round trip; see `jobd.client.Client.enqueue_many`."""
        calls = list(calls)
        if not calls:
            return []
        operation = self.enqueue_operation(
            calls, queue=queue, delay=delay, at=at, priority=priority, max_tries=max_tries,
            timeout=timeout, expires=expires, group=group, cost=cost,
            strict=strict,
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

    def abort(self, timeout: float = 2.0) -> bool:
        aborted: bool = self._producer.run(self._abort(timeout))
        return aborted
