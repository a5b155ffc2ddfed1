"""SAQ's driver, job functions and worker `settings`; runs in bench/.venvs/saq.

Worker: `saq bench.adapters.saq.settings` with `concurrency` = the concurrency (SAQ's default is
10); everything else at SAQ's defaults (one process, WARNING logging). Enqueue: `Queue.enqueue`;
SAQ has no batch enqueue (`Queue.map` enqueues one by one and waits for the results, and
`Queue.batch` only groups aborts).
"""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from bench.adapters import body, common


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    await body.noop(i)


async def sleep(ctx: dict[str, Any], *, i: int) -> None:
    await body.sleep(i)


async def stamp(ctx: dict[str, Any], *, i: int) -> None:
    await body.stamp(i)


async def llm(ctx: dict[str, Any], *, i: int) -> None:
    await body.llm(i)


def settings() -> dict[str, Any]:
    """Read by the `saq` CLI in the worker process."""
    return {
        "queue": Queue.from_url(os.environ["BENCH_REDIS_URL"]),
        "functions": [noop, sleep, stamp, llm],
        "concurrency": int(os.environ["BENCH_CONCURRENCY"]),
    }


class SaqPeer(common.Peer):
    name = "saq"

    async def open(self, redis_url: str) -> None:
        self.queue = Queue.from_url(redis_url)
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, function: str, i: int) -> None:
        job = await self.queue.enqueue(function, i=i)
        assert job is not None

    def worker_command(self, options: common.Options) -> list[str]:
        return [self.bin("saq"), "bench.adapters.saq.settings"]


if __name__ == "__main__":
    common.main(SaqPeer())
