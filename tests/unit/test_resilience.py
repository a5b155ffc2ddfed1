"""The worker's Redis call helper: what it retries, what it gives up on, what it turns into errors."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from jobd.errors import RedisAuthError
from jobd.ops.metrics import Metrics
from jobd.worker.resilience import RedisCaller, RedisHealth, is_transient


def failing(*errors: Exception) -> object:
    """An async callable raising `errors` in turn, then returning 'done'."""
    remaining = list(errors)

    async def call() -> str:
        if remaining:
            raise remaining.pop(0)
        return "done"

    return call


async def test_transient_errors_are_retried_and_health_recovers() -> None:
    health = RedisHealth()
    caller = RedisCaller(health, "redis://host", max_delay=0.01)
    call = failing(RedisConnectionError("reset"), ResponseError("LOADING Redis is loading"))
    assert await caller("claim", call) == "done"  # type: ignore[arg-type]
    assert health.available and health.errors == 2 and health.reconnects == 1


def test_redis_errors_start_at_zero_for_the_usual_classes() -> None:
    """A healthy worker's /metrics already has the series an alert on
    rate(jobd_redis_errors_total[5m]) reads, so the first error shows as an increase."""
    metrics = Metrics()
    assert "jobd_redis_errors_total{" not in metrics.render().decode()  # the check below can fail
    health = RedisHealth(metrics)
    text = metrics.render().decode()
    for name in ("ConnectionError", "TimeoutError", "OutOfMemoryError", "ReadOnlyError"):
        assert f'jobd_redis_errors_total{{error="{name}"}} 0.0' in text
    health.failed("claim", RedisConnectionError("reset"))
    assert 'jobd_redis_errors_total{error="ConnectionError"} 1.0' in metrics.render().decode()


async def test_other_errors_raise_unless_keep_trying() -> None:
    caller = RedisCaller(RedisHealth(), "redis://host", max_delay=0.01)
    with pytest.raises(ResponseError, match="ERR bug"):
        await caller("claim", failing(ResponseError("ERR bug")))  # type: ignore[arg-type]
    call = failing(ResponseError("ERR bug"), ResponseError("ERR bug"))
    assert await caller("claim", call, keep_trying=True) == "done"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (AuthenticationError("invalid username-password pair"), "wrong user name or password"),
        (ResponseError("NOAUTH Authentication required."), "requires a password and none was"),
        (ResponseError("NOPERM no permissions to run 'evalsha'"), "ACL user lacks a permission"),
    ],
)
async def test_credential_errors_stop_at_once(error: Exception, hint: str) -> None:
    caller = RedisCaller(RedisHealth(), "redis://jobd:***@host", max_delay=0.01)
    with pytest.raises(RedisAuthError) as raised:
        await caller("claim", failing(error), keep_trying=True)  # type: ignore[arg-type]
    assert str(raised.value).startswith("Redis at redis://jobd:***@host refused the credentials (")
    assert hint in str(raised.value)


async def test_deadline_gives_up() -> None:
    caller = RedisCaller(RedisHealth(), "redis://host", max_delay=0.05)
    errors = [RedisConnectionError("down")] * 100
    with pytest.raises(RedisConnectionError):
        await caller("requeue", failing(*errors), deadline=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("You can't write against a read only replica."),
        TryAgainError("Multiple keys request during rehashing of slot"),
        MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    ],
)
def test_replies_redis_py_strips_the_code_of_are_still_transient(error: Exception) -> None:
    """redis-py raises these without their OOM/READONLY/... prefix (chaos scenario F20)."""
    assert is_transient(error)
