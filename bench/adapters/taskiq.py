"""taskiq's driver, tasks and broker (taskiq-redis); runs in bench/.venvs/taskiq.

The broker is the one taskiq-redis's README sets up: `RedisStreamBroker` (acknowledged delivery)
with `RedisAsyncResultBackend`, both at their defaults. Worker: `taskiq worker
bench.adapters.taskiq:broker --workers 1 --max-async-tasks C` (taskiq's default is 2 worker
processes, so one is asked for; 100 async tasks is its default anyway). Enqueue: `task.kiq()`;
taskiq has no batch enqueue API. The producer calls `broker.startup()` first, as documented: it
creates the stream's consumer group, so jobs queued before a worker starts are delivered. Tasks
get explicit names: the producer runs this module as __main__, which taskiq would name differently.
"""

from __future__ import annotations

import os

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from bench.adapters import body, common

_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379")

broker = RedisStreamBroker(url=_URL).with_result_backend(RedisAsyncResultBackend(redis_url=_URL))


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    await body.noop(i)


@broker.task(task_name="sleep")
async def sleep(i: int) -> None:
    await body.sleep(i)


@broker.task(task_name="stamp")
async def stamp(i: int) -> None:
    await body.stamp(i)


@broker.task(task_name="llm")
async def llm(i: int) -> None:
    await body.llm(i)


TASKS = {"noop": noop, "sleep": sleep, "stamp": stamp, "llm": llm}


class TaskiqPeer(common.Peer):
    name = "taskiq"

    async def open(self, redis_url: str) -> None:
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def enqueue(self, function: str, i: int) -> None:
        await TASKS[function].kiq(i)

    def worker_command(self, options: common.Options) -> list[str]:
        return [
            self.bin("taskiq"), "worker", "bench.adapters.taskiq:broker",
            "--workers", "1", "--max-async-tasks", str(options.concurrency),
        ]  # fmt: skip


if __name__ == "__main__":
    common.main(TaskiqPeer())
