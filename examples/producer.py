"""A producer in a plain asyncio program: enqueue jobs, follow them, await their results.

It talks to the worker of config/jobs.toml, which must be running (in another terminal):

    jobd --config config/jobs.toml        # terminal 1: the worker (and its embedded Redis)
    python examples/producer.py           # terminal 2: this script

`Client.from_config` reads the same file as the worker: its Redis (for `url = "embedded"`, the
server that worker started, found in config/.jobd/redis.json), key prefix and default queue.
In a web service, open one client at startup and close it at shutdown (FastAPI's lifespan, …).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from jobd.client import Client
from jobd.errors import JobFailed, RedisUnavailable

CONFIG = Path(__file__).resolve().parent.parent / "config" / "jobs.toml"
TIMEOUT = 30.0
"""Longest wait for one result, seconds."""


async def main(config: Path = CONFIG) -> None:
    async with Client.from_config(config) as jobs:
        # One job: enqueue returns once the job is stored; then ask about it and await its result.
        email = await jobs.enqueue("send_email", "ada@example.com", subject="Welcome")
        print(f"send_email: job {email.id} is {await email.status()}")
        print(f"send_email: result {await email.result(timeout=TIMEOUT)}")

        # Many jobs in one round trip, awaited together (resize_image is a plain def: a thread).
        sizes = [(640, 480), (1280, 720), (1920, 1080)]
        images = await jobs.enqueue_many([("resize_image", size, {}) for size in sizes])
        results = await asyncio.gather(*(job.result(timeout=TIMEOUT) for job in images))
        print(f"resize_image: {', '.join(results)}")

        # A job that fails on its first try and is retried with backoff.
        flaky = await jobs.enqueue("flaky", 1)
        print(f"flaky: {await flaky.result(timeout=TIMEOUT)}")

        # A job that fails on every try: after max_tries it is in the dead letters.
        broken = await jobs.enqueue("flaky", 5, max_tries=2)
        try:
            await broken.result(timeout=TIMEOUT)
        except JobFailed as error:
            print(
                f"flaky: job {error.job_id} failed for good ({error.error_type}: {error.message})"
            )
            print("       `jobd dead list` shows it; `jobd dead retry ID` runs it again")


if __name__ == "__main__":
    try:
        asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else CONFIG))
    except RedisUnavailable as error:
        sys.exit(f"{Path(sys.argv[0]).name}: {error}")
