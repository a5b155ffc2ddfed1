"""Dramatiq's driver, actors and broker; runs in bench/.venvs/dramatiq.

Dramatiq is thread-based: actors are plain functions (the same bodies, through a synchronous
redis-py client; the 10 ms job sleeps with `time.sleep`), and concurrency is worker threads.
Worker: `dramatiq bench.adapters.dramatiq --processes 1 --threads C` (defaults: 2 processes of
8 threads); `RedisBroker` and the default middleware unchanged (no results backend: Dramatiq
stores no results by default). Enqueue: `actor.send()`, a synchronous call; Dramatiq has no batch
enqueue (a `group` sends its messages one by one).
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.adapters import body, common

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(i: int) -> None:
    body.noop_sync(i)


@dramatiq.actor(actor_name="sleep")
def sleep(i: int) -> None:
    body.sleep_sync(i)


@dramatiq.actor(actor_name="stamp")
def stamp(i: int) -> None:
    body.stamp_sync(i)


@dramatiq.actor(actor_name="llm")
def llm(i: int) -> None:
    body.llm_sync(i)


ACTORS = {"noop": noop, "sleep": sleep, "stamp": stamp, "llm": llm}


class DramatiqPeer(common.Peer):
    name = "dramatiq"

    async def open(self, redis_url: str) -> None:
        # W1c sends from 200 threads; redis-py's pool holds 100 connections by default and
        # refuses the 101st (MaxConnectionsError): room for one per thread, as a web app sized
        # for 200 threads would configure. The other steps use one thread, the workers their own.
        pool = broker.client.connection_pool
        pool.max_connections = max(pool.max_connections, 1000)

    async def close(self) -> None:
        pass

    async def enqueue(self, function: str, i: int) -> None:
        ACTORS[function].send(i)

    def enqueue_blocking(self, function: str, i: int) -> None:
        ACTORS[function].send(i)

    def worker_command(self, options: common.Options) -> list[str]:
        return [
            self.bin("dramatiq"), "bench.adapters.dramatiq",
            "--processes", "1", "--threads", str(options.concurrency),
        ]  # fmt: skip


if __name__ == "__main__":
    common.main(DramatiqPeer())
