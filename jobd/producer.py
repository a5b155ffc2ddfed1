"""What the async and the sync producer clients share: option checks, the serializer, the operations
they drive (jobd.commands), and the job handle's read-only parts. Each client adds only its I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from jobd import commands
from jobd.commands import JobRef, Operation
from jobd.errors import RedisAuthError, RedisUnavailable
from jobd.serializer import DEFAULT_MAX_BYTES, JsonSerializer, Serializer
from jobd.settings import redact_url

Call = tuple[str, Sequence[Any], dict[str, Any]]
AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


def is_auth_error(error: BaseException) -> bool:
    """Wrong password, missing password, or an ACL denial."""
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


class Producer:
    """Base of `Client` and `SyncClient`."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "jobd",
        default_queue: str = "default",
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.key_prefix = commands.check_queue(key_prefix)
        self.default_queue = commands.check_queue(default_queue)
        self.serializer: Serializer = JsonSerializer(max_payload_bytes)
        self.url_text = redact_url(url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url_text!r}, key_prefix={self.key_prefix!r})"

    def enqueue_operation(
        self,
        calls: Iterable[Call],
        job_ids: Sequence[str | None] | None = None,
        *,
        queue: str | None,
        delay: float | timedelta | None,
        at: datetime | None,
        priority: int,
        max_tries: int | None,
        timeout: float | timedelta | None,
        expires: float | timedelta | None,
        strict: bool,
    ) -> Operation:
        """Check the options and build the enqueue operation (nothing is sent yet)."""
        options = commands.enqueue_options(
            queue=queue or self.default_queue, delay=delay, at=at, priority=priority,
            max_tries=max_tries, timeout=timeout, expires=expires,
        )  # fmt: skip
        normalized = [(name, tuple(args), dict(kwargs)) for name, args, kwargs in calls]
        return commands.enqueue(
            self.key_prefix, options, normalized, self.serializer, job_ids=job_ids, strict=strict
        )

    def ref(self, job_id: str, queue: str | None) -> JobRef:
        return JobRef(
            commands.check_job_id(job_id), commands.check_queue(queue or self.default_queue)
        )

    def translate(self, error: Exception) -> Exception:
        """Turn redis-py errors a user cannot act on into jobd errors that say what to do."""
        if is_auth_error(error):
            return RedisAuthError(auth_message(self.url_text, error))
        if isinstance(error, RedisConnectionError):
            return RedisUnavailable(f"cannot reach Redis at {self.url_text}: {error}")
        return error


class Handle:
    """Base of the job handles: identity, and the operations their methods drive."""

    def __init__(self, producer: Producer, ref: JobRef) -> None:
        self._producer = producer
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
        return f"{type(self).__name__}(id={self.id!r}, queue={self.queue!r})"

    def _status(self) -> Operation:
        return commands.status(self._producer.key_prefix, self._ref)

    def _info(self) -> Operation:
        return commands.info(self._producer.key_prefix, self._ref, self._producer.serializer)

    def _result(self, timeout: float | None) -> Operation:
        producer = self._producer
        return commands.result(producer.key_prefix, self._ref, producer.serializer, timeout)

    def _abort(self, timeout: float) -> Operation:
        return commands.abort(self._producer.key_prefix, self._ref, timeout)
