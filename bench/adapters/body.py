"""The job bodies every library runs, so that each job does the same work everywhere.

`noop` INCRs the completion counter, `sleep` awaits 10 ms and then INCRs it, `stamp` records its
start time (`time.time()`) in a list for the latency workload, and `llm` stands for a call to a
slow remote API (W7): it awaits `asyncio.sleep(1)` (Dramatiq: `time.sleep(1)` in its thread), then
INCRs the counter through a pool of at most 64 connections, so that 2,000 jobs ending in the same
moment share connections instead of each opening one of its own (the same for every library).
They go through the benchmark's own connection (one client per worker process, opened lazily) to
the benchmark's own redis-server (BENCH_COUNTER_URL), not the one the library uses: the libraries'
Redis then sees only their own commands, so its command counts need no correction, and completion
is detected the same way for all.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio

DONE_KEY = "bench:done"
STARTS_KEY = "bench:starts"
SLEEP_SECONDS = 0.01
LLM_SECONDS = 1.0
LLM_POOL = 64

_async_client: redis.asyncio.Redis | None = None
_sync_client: redis.Redis | None = None
_async_pooled: redis.asyncio.Redis | None = None
_sync_pooled: redis.Redis | None = None


def redis_url() -> str:
    return os.environ["BENCH_COUNTER_URL"]


def async_client() -> redis.asyncio.Redis:
    global _async_client
    if _async_client is None:
        _async_client = redis.asyncio.Redis.from_url(redis_url())
    return _async_client


def sync_client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(redis_url())
    return _sync_client


def async_pooled() -> redis.asyncio.Redis:
    global _async_pooled
    if _async_pooled is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url(), max_connections=LLM_POOL, timeout=None
        )
        _async_pooled = redis.asyncio.Redis(connection_pool=pool)
    return _async_pooled


def sync_pooled() -> redis.Redis:
    global _sync_pooled
    if _sync_pooled is None:
        pool = redis.BlockingConnectionPool.from_url(
            redis_url(), max_connections=LLM_POOL, timeout=None
        )
        _sync_pooled = redis.Redis(connection_pool=pool)
    return _sync_pooled


async def noop(i: int) -> None:
    await async_client().incr(DONE_KEY)


async def sleep(i: int) -> None:
    await asyncio.sleep(SLEEP_SECONDS)
    await async_client().incr(DONE_KEY)


async def stamp(i: int) -> None:
    started = time.time()
    await async_client().rpush(STARTS_KEY, f"{i} {started!r}")


async def llm(i: int) -> None:
    await asyncio.sleep(LLM_SECONDS)
    await async_pooled().incr(DONE_KEY)


def noop_sync(i: int) -> None:
    sync_client().incr(DONE_KEY)


def sleep_sync(i: int) -> None:
    time.sleep(SLEEP_SECONDS)
    sync_client().incr(DONE_KEY)


def stamp_sync(i: int) -> None:
    started = time.time()
    sync_client().rpush(STARTS_KEY, f"{i} {started!r}")


def llm_sync(i: int) -> None:
    time.sleep(LLM_SECONDS)
    sync_pooled().incr(DONE_KEY)
