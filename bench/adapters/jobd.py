"""jobd's driver and job functions; runs from the repository's own environment.

Worker: `python -m jobd run --config <generated jobs.toml>` with `worker.concurrency` set and the
metrics endpoint on a free port (`http.listen = "127.0.0.1:0"`); everything else at its defaults.
W6 (several workers) runs that command once with `--processes N`.
Bulk enqueue: `Client.enqueue_many` (one script call per batch). W7L: `llm_limited` is `llm` under
`[limits.llm] rate = "1000/s"` (the limit is in the config only for that step); after the drain the
jobs' `started_at` stamps (the Redis clock) give the rate reached and the most starts in any second.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from bench.adapters import body, common, starts

FUNCTIONS = ("noop", "sleep", "stamp", "llm")
LIMITED = "llm_limited"
LIMIT_RATE = 1000


async def noop(i: int) -> None:
    await body.noop(i)


async def sleep(i: int) -> None:
    await body.sleep(i)


async def stamp(i: int) -> None:
    await body.stamp(i)


async def llm(i: int) -> None:
    await body.llm(i)


llm_limited = llm


def config_text(redis_url: str, concurrency: int, limited: bool = False) -> str:
    functions = "".join(
        f'\n[functions.{name}]\npath = "bench.adapters.jobd:{name}"\n' for name in FUNCTIONS
    )
    if limited:  # only in W7L's config: the other steps' workers know no limit
        functions += (
            f'\n[limits.llm]\nrate = "{LIMIT_RATE}/s"\n'
            f'\n[functions.{LIMITED}]\npath = "bench.adapters.jobd:{LIMITED}"\nlimits = ["llm"]\n'
        )
    return (
        f'[redis]\nurl = "{redis_url}"\n\n'
        f"[worker]\nconcurrency = {concurrency}\n\n"
        '[http]\nlisten = "127.0.0.1:0"\n'
        f"{functions}"
    )


class JobdPeer(common.Peer):
    name = "jobd"
    bulk_reason = None

    async def open(self, redis_url: str) -> None:
        from jobd.client import Client, Job

        self.client = Client(redis_url)
        self.limited: list[Job] = []

    async def close(self) -> None:
        await self.client.close()

    async def enqueue(self, function: str, i: int) -> None:
        await self.client.enqueue(function, i)

    async def enqueue_bulk(self, function: str, indices: Sequence[int]) -> None:
        jobs = await self.client.enqueue_many([(function, (i,), {}) for i in indices])
        if function == LIMITED:
            self.limited.extend(jobs)

    def worker_command(self, options: common.Options) -> list[str]:
        config = options.logdir / f"jobd-{options.tag}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        text = config_text(options.redis_url, options.concurrency, options.function == LIMITED)
        config.write_text(text)
        return [sys.executable, "-m", "jobd", "run", "--config", str(config)]

    def group_command(self, options: common.Options) -> list[str]:
        """W6: one `jobd --processes N` (a supervisor and N workers), as a user would run it."""
        return [*self.worker_command(options), "--processes", str(options.workers)]

    async def after_drain(self, options: common.Options) -> dict[str, Any]:
        """W7L: the rate reached under the limit, from the jobs' started_at stamps (Redis clock)."""
        if options.function != LIMITED or not self.limited:
            return {}
        from jobd.client import Client
        from jobd.redis.keys import QueueKeys

        async with Client(options.redis_url) as client, client.redis.pipeline(False) as pipe:
            for job in self.limited:
                pipe.hget(QueueKeys(client.key_prefix, job.queue).job(job.id), "started_at")
            stamps = [int(value) for value in await pipe.execute() if value is not None]
        return {"limit_per_s": LIMIT_RATE, **starts.summary(stamps, len(self.limited))}


if __name__ == "__main__":
    common.main(JobdPeer())
