"""Job functions of tests/system/test_processes.py (`jobd --processes N`); they record
`event|job id|try|pid` lines in the ledger Redis (LEDGER_URL)."""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio

import jobd


def _ledger() -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(os.environ["LEDGER_URL"])


async def _record(ledger: redis.asyncio.Redis, event: str, key: str) -> None:
    job = jobd.current_job()
    await ledger.rpush(key, f"{event}|{job.id}|{job.try_number}|{os.getpid()}")


async def meet(key: str, count: int, then_sleep: float = 0.0) -> int:
    """Record `start`, wait until `count` jobs have started (each in another worker when the
    workers run one job at a time), sleep `then_sleep`, record `end`; returns the pid."""
    ledger = _ledger()
    await _record(ledger, "start", key)
    # a barrier: the last to arrive lets everyone go
    if await ledger.incr(f"{key}:arrived") == count:
        await ledger.rpush(f"{key}:go", *["go"] * count)
    if await ledger.blpop([f"{key}:go"], timeout=30) is None:
        raise TimeoutError(f"fewer than {count} jobs met at {key}")
    await asyncio.sleep(then_sleep)
    await _record(ledger, "end", key)
    await ledger.aclose()
    return os.getpid()


async def hang_first_try(key: str) -> int:
    """Record `start`; hang on the first try (its worker is killed), return on the next."""
    ledger = _ledger()
    await _record(ledger, "start", key)
    if jobd.current_job().try_number == 1:
        await asyncio.sleep(60)
    await _record(ledger, "end", key)
    await ledger.aclose()
    return os.getpid()


async def exit_config() -> None:
    """End the worker with 78 (EX_CONFIG), as a configuration fault found at run time would."""
    os._exit(78)


async def block_first_try(key: str, seconds: float) -> int:
    """Record `start`; block the event loop for `seconds` on the first try (a bug users make)."""
    ledger = _ledger()
    await _record(ledger, "start", key)
    if jobd.current_job().try_number == 1:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking on purpose
    await _record(ledger, "end", key)
    await ledger.aclose()
    return os.getpid()
