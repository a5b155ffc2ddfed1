"""The producer client: enqueue jobs and follow them. Needs only `redis` (never the worker's parts).

async with Client("redis://localhost:6379/0") as jobs:
    job = await jobs.enqueue("send_email", "a@example.com", subject="Hi")
    print(await job.result(timeout=10))
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from jobd import commands
from jobd.commands import Command, JobRef, Operation, ScriptCall
from jobd.errors import RedisAuthError, RedisUnavailable
from jobd.model import JobInfo, JobStatus
from jobd.scripts import run_async
from jobd.serializer import DEFAULT_MAX_BYTES, JsonSerializer, Serializer

Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def connection_options(socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
    """redis-py options shared by producer and worker: a few quick retries instead of redis-py's
    default ten (which stall a call for up to a minute), and timeouts above every blocking wait."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
        "health_check_interval": 10,
    }


AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def is_auth_error(error: BaseException) -> bool:
    return isinstance(error, AuthenticationError) or (
        isinstance(error, ResponseError) and str(error).startswith(AUTH_REPLIES)
    )


def auth_message(url_text: str, error: BaseException) -> str:
    """Say what to do about a credential error, not only what Redis replied."""
    text = str(error)
    if "NOAUTH" in text or "HELLO must be called with the client already authenticated" in text:
        hint = "Redis requires a password and none was given: put it in redis.url"
    elif "NOPERM" in text:
        hint = "the Redis ACL user lacks a permission jobd needs"
    else:
        hint = "wrong user name or password in redis.url"
    return f"Redis at {url_text} refused the credentials ({hint}): {text}"


def translate_error(error: Exception, url_text: str) -> Exception:
    """Turn redis-py errors a user cannot act on into jobd errors that say what to do."""
    if is_auth_error(error):
        return RedisAuthError(auth_message(url_text, error))
    if isinstance(error, RedisConnectionError):
        return RedisUnavailable(f"cannot reach Redis at {url_text}: {error}")
    return error


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://***@{host}"


class Client:
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
    ) -> None:
        self.key_prefix = commands.check_queue(key_prefix)
        self.default_queue = commands.check_queue(default_queue)
        self.serializer: Serializer = JsonSerializer(max_payload_bytes)
        self._url_text = redact_url(url)
        self._owns_redis = redis_client is None
        self.redis = redis_client or redis.asyncio.Redis.from_url(
            url, **connection_options(socket_timeout, connect_timeout)
        )

    def __repr__(self) -> str:
        return f"Client({self._url_text!r}, key_prefix={self.key_prefix!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()

    async def run(self, operation: Operation) -> Any:
        """Drive a sans-IO operation from jobd.commands against Redis."""
        try:
            request = next(operation)
            while True:
                try:
                    if isinstance(request, ScriptCall):
                        reply = await run_async(
                            self.redis, request.name, request.keys, request.args
                        )
                    else:
                        reply = await self.redis.execute_command(*request.args)  # type: ignore[no-untyped-call]
                except Exception as error:  # noqa: BLE001 - re-raised, translated
                    request = operation.throw(translate_error(error, self._url_text))
                else:
                    request = operation.send(reply)
        except StopIteration as stop:
            return stop.value

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
        strict: bool = False,
        **kwargs: Any,
    ) -> Job:
        """Store a job; returns once it is in Redis. With an existing `job_id`, nothing is created
        and the handle of the existing job is returned (`job.created` is False)."""
        options = commands.enqueue_options(
            queue=queue or self.default_queue,
            delay=delay,
            at=at,
            priority=priority,
            max_tries=max_tries,
            timeout=timeout,
            expires=expires,
        )
        refs = await self.run(
            commands.enqueue(
                self.key_prefix,
                options,
                [(function, args, kwargs)],
                self.serializer,
                job_ids=[job_id],
                strict=strict,
            )
        )
        return Job(self, refs[0])

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
        strict: bool = False,
    ) -> list[Job]:
        """Store many `(function, args, kwargs)` calls in one round trip, with the same options."""
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
        refs = await self.run(
            commands.enqueue(self.key_prefix, options, calls, self.serializer, strict=strict)
        )
        return [Job(self, ref) for ref in refs]

    def job(self, job_id: str, *, queue: str | None = None) -> Job:
        """A handle to an existing job (no round trip)."""
        ref = JobRef(
            commands.check_job_id(job_id), commands.check_queue(queue or self.default_queue)
        )
        return Job(self, ref)


class Job:
    """Handle to one job: its status, result, info, and abort."""

    def __init__(self, client: Client, ref: JobRef) -> None:
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
        """False when enqueue found a job with this id already (deduplicated)."""
        return self._ref.created

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, queue={self.queue!r})"

    async def status(self) -> JobStatus:
        status: JobStatus = await self._client.run(
            commands.status(self._client.key_prefix, self._ref)
        )
        return status

    async def info(self) -> JobInfo | None:
        """Everything stored about the job, or None when it does not exist."""
        client = self._client
        info: JobInfo | None = await client.run(
            commands.info(client.key_prefix, self._ref, client.serializer)
        )
        return info

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result.

        Raises JobFailed, JobAborted, JobNotFound, or TimeoutError after `timeout` seconds.
        """
        client = self._client
        return await client.run(
            commands.result(client.key_prefix, self._ref, client.serializer, timeout)
        )

    async def abort(self, timeout: float = 2.0) -> bool:
        """Abort the job. True if it will not run, or if it was running and was cancelled within
        `timeout` seconds; False if it had already ended (or still runs after `timeout`)."""
        aborted: bool = await self._client.run(
            commands.abort(self._client.key_prefix, self._ref, timeout)
        )
        return aborted


__all__ = ["Client", "Command", "Job", "JobInfo", "JobStatus"]
