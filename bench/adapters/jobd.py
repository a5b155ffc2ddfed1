"""jobd's driver and job functions; runs from the repository's own environment.

Worker: `python -m jobd run --config <generated jobs.toml>` with `worker.concurrency` set and the
metrics endpoint on a free port (`http.listen = "127.0.0.1:0"`); everything else at its defaults.
Bulk enqueue: `Client.enqueue_many` (one script call per batch).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.adapters import body, common

FUNCTIONS = ("noop", "sleep", "stamp")


async def noop(i: int) -> None:
    await body.noop(i)


async def sleep(i: int) -> None:
    await body.sleep(i)


async def stamp(i: int) -> None:
    await body.stamp(i)


def config_text(redis_url: str, concurrency: int) -> str:
    functions = "".join(
        f'\n[functions.{name}]\npath = "bench.adapters.jobd:{name}"\n' for name in FUNCTIONS
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
        from jobd.client import Client

        self.client = Client(redis_url)

    async def close(self) -> None:
        await self.client.close()

    async def enqueue(self, function: str, i: int) -> None:
        await self.client.enqueue(function, i)

    async def enqueue_bulk(self, function: str, indices: Sequence[int]) -> None:
        await self.client.enqueue_many([(function, (i,), {}) for i in indices])

    def worker_command(self, options: common.Options) -> list[str]:
        config = options.logdir / f"jobd-{options.tag}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(config_text(options.redis_url, options.concurrency))
        return [sys.executable, "-m", "jobd", "run", "--config", str(config)]


if __name__ == "__main__":
    common.main(JobdPeer())
