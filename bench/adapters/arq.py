"""arq's driver, job functions and `WorkerSettings`; runs in bench/.venvs/arq.

Worker: `arq bench.adapters.arq.WorkerSettings` with `max_jobs` = the concurrency (arq's default
is 10); everything else at arq's defaults (poll_delay 0.5 s, queue_read_limit max(5 * max_jobs,
100), results kept 1 h, INFO logging of every job). Enqueue: `ArqRedis.enqueue_job`; arq has no
batch enqueue API.
"""

from __future__ import annotations

import os
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from bench.adapters import body, common


async def noop(ctx: dict[str, Any], i: int) -> None:
    await body.noop(i)


async def sleep(ctx: dict[str, Any], i: int) -> None:
    await body.sleep(i)


async def stamp(ctx: dict[str, Any], i: int) -> None:
    await body.stamp(i)


async def llm(ctx: dict[str, Any], i: int) -> None:
    await body.llm(i)


class WorkerSettings:
    functions = [noop, sleep, stamp, llm]
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://localhost"))
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "100"))


class ArqPeer(common.Peer):
    name = "arq"

    async def open(self, redis_url: str) -> None:
        self.pool: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, function: str, i: int) -> None:
        job = await self.pool.enqueue_job(function, i)
        assert job is not None

    def worker_command(self, options: common.Options) -> list[str]:
        return [self.bin("arq"), "bench.adapters.arq.WorkerSettings"]


if __name__ == "__main__":
    common.main(ArqPeer())
