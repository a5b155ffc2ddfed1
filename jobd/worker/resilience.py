"""Calling Redis from the worker through outages: transient errors are retried with jittered
exponential backoff (and flip the worker's Redis health), credential errors stop the worker."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from jobd.errors import RedisAuthError, RedisTLSError
from jobd.ops.metrics import Metrics
from jobd.redis.auth import auth_message, is_auth_error
from jobd.redis.tls import tls_problem

T = TypeVar("T")
logger = logging.getLogger("jobd.redis")

TRANSIENT_REPLIES = (
    "LOADING",
    "MASTERDOWN",
    "READONLY",
    "UNBLOCKED",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "OOM",
)
"""Error replies that mean "Redis cannot do this right now" (restarting, failing over, full)."""
TRANSIENT_ERRORS = (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError)
"""The same replies as redis-py raises them: it strips the code from the message of these (OOM,
READONLY, TRYAGAIN, CLUSTERDOWN, MASTERDOWN), so the prefixes above never match them (found by
tests/chaos F20: a full Redis was treated as an unexpected error)."""
COUNTED_ERRORS = (
    "ConnectionError",
    "TimeoutError",
    "BusyLoadingError",
    "ResponseError",
    *(error.__name__ for error in TRANSIENT_ERRORS),
)
"""The classes of the errors a worker's Redis calls usually fail with: jobd_redis_errors_total
starts at 0 for each, so that rate() over it sees the first error (a series that appears with its
first increment hides that increment). Other classes appear when they first occur."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
        return not isinstance(error, AuthenticationError)
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(TRANSIENT_REPLIES)


class RedisHealth:
    """Whether the worker's Redis calls work; logs and counts each transition once."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.available = True
        self.errors = 0
        self.reconnects = 0
        self._metrics = metrics
        self._on_change = on_change
        if metrics is not None:
            for name in COUNTED_ERRORS:
                metrics.redis_errors.labels(name)

    def failed(self, what: str, error: BaseException) -> None:
        self.errors += 1
        if self._metrics is not None:
            self._metrics.redis_errors.labels(type(error).__name__).inc()
        if self.available:
            self.available = False
            logger.error(
                "redis unavailable during %s: %s: %s", what, type(error).__name__, error,
                extra={"event": "redis_unavailable", "error_type": type(error).__name__},
            )  # fmt: skip
            if self._metrics is not None:
                self._metrics.redis_up.set(0)
            if self._on_change is not None:
                self._on_change(False)

    def succeeded(self) -> None:
        if not self.available:
            self.available = True
            self.reconnects += 1
            logger.warning("redis available again", extra={"event": "redis_available"})
            if self._metrics is not None:
                self._metrics.redis_reconnects.inc()
                self._metrics.redis_up.set(1)
            if self._on_change is not None:
                self._on_change(True)


DIAGNOSE_EVERY = 10
"""Until Redis has answered once, every this many failed attempts ask `diagnose` why."""


class RedisCaller:
    """Retries a Redis call until it works, the deadline passes, or credentials are refused.

    `diagnose` (jobd.redis.tls.diagnose) explains connection failures that are configuration mistakes
    in disguise; it is asked only until Redis has answered once."""

    def __init__(
        self,
        health: RedisHealth,
        url_text: str,
        *,
        max_delay: float = 5.0,
        diagnose: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self.health = health
        self.url_text = url_text
        self.max_delay = max_delay
        self._diagnose = diagnose
        self._answered = False

    async def __call__(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        keep_trying: bool = False,
    ) -> T:
        """Run `call` until it works. Transient errors are retried; with `keep_trying`, so is any
        other error (logged once per streak), because a loop of the worker must not die of one."""
        attempt = 0
        while True:
            try:
                value = await call()
            except Exception as error:
                if is_auth_error(error):
                    raise RedisAuthError(auth_message(self.url_text, error)) from error
                problem = tls_problem(error)
                if problem is not None:
                    raise RedisTLSError(f"Redis at {self.url_text}: {problem}") from error
                if is_transient(error):
                    self.health.failed(what, error)
                    await self._explain(attempt, error)
                elif not keep_trying:
                    raise
                elif attempt == 0:
                    logger.exception("%s failed; retrying with backoff", what)
                attempt += 1
                delay = min(self.max_delay, 0.05 * 2**attempt) * (0.5 + random.random() / 2)
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)  # backoff between reconnect attempts, not a poll
                continue
            self._answered = True
            self.health.succeeded()
            return value

    async def _explain(self, attempt: int, error: BaseException) -> None:
        """Raise RedisTLSError if the failure is a TLS mistake (see jobd.redis.tls.diagnose)."""
        if self._diagnose is None or self._answered or attempt % DIAGNOSE_EVERY:
            return
        problem = await self._diagnose()
        if problem is not None:
            raise RedisTLSError(f"Redis at {self.url_text}: {problem}") from error
