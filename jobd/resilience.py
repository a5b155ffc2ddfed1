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
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from jobd.errors import RedisAuthError
from jobd.metrics import Metrics
from jobd.producer import auth_message, is_auth_error

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


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
        return not isinstance(error, AuthenticationError)
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


class RedisCaller:
    """Retries a Redis call until it works, the deadline passes, or credentials are refused."""

    def __init__(self, health: RedisHealth, url_text: str, *, max_delay: float = 5.0) -> None:
        self.health = health
        self.url_text = url_text
        self.max_delay = max_delay

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
                if is_transient(error):
                    self.health.failed(what, error)
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
            self.health.succeeded()
            return value
