"""`python -m bench.web [--jobs 1000000] [--reps 9]`: how long the dashboard takes to render its
pages with a deep queue (issue 22: "a page with 1,000,000 queued jobs renders in well under a
second").

It starts its own redis-server, puts `--jobs` job ids into one queue's `queued` set (in batches of
100,000, as enqueue would have ordered them) with real job hashes for the newest FILTER_WINDOW + 50
of them and the oldest (what the pages read), and renders each page through the app in process
(httpx's ASGI transport: no network, no browser). For each page it prints the median, fastest and
slowest render in ms over `--reps` renders, and the Redis commands one render sends (INFO
commandstats), which stay the same however deep the queue is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import redis

from jobd.redis.keys import QueueKeys

BATCH = 100_000
QUEUE = "default"
FUNCTIONS = ("send_email", "resize_image", "sync_crm")


def fill_deep_queue(connection: redis.Redis, prefix: str, count: int, hashes: int) -> list[str]:
    """`count` job ids in `prefix`'s queue "default" (scores in enqueue order), with job hashes
    for the newest `hashes` and the oldest job; returns the ids that have hashes, newest first."""
    keys = QueueKeys(prefix, QUEUE)
    server_seconds, _ = connection.time()
    now_ms = int(server_seconds) * 1000
    for first in range(0, count, BATCH):
        members = {f"job-{n:07d}": n for n in range(first, min(first + BATCH, count))}
        connection.zadd(keys.queued, members)
    connection.set(keys.seq, count)
    with_hashes = [count - 1 - n for n in range(min(hashes, count))] + [0]
    pipe = connection.pipeline(transaction=False)
    for n in with_hashes:
        payload = {"v": 1, "args": [f"user{n}@example.com"], "kwargs": {"template": "welcome"}}
        pipe.hset(keys.job(f"job-{n:07d}"), mapping={
            "id": f"job-{n:07d}", "function": FUNCTIONS[n % len(FUNCTIONS)],
            "payload": json.dumps(payload), "queue": QUEUE, "priority": 0, "seq": n + 1,
            "tries": 0, "lost": 0, "status": "queued",
            "enqueued_at": now_ms - (count - n), "due_at": now_ms - (count - n),
        })  # fmt: skip
    pipe.execute()
    return [f"job-{n:07d}" for n in with_hashes]


PAGES = (
    ("overview", "/"),
    ("queue, first page", f"/queues/{QUEUE}"),
    ("queue, filtered by function", f"/queues/{QUEUE}?function=resize_image"),
    ("queue, page 10,000", f"/queues/{QUEUE}?offset=499950"),
    ("queue, oldest first", f"/queues/{QUEUE}?order=oldest"),
    ("a job", f"/queues/{QUEUE}/job?id=job-0000000"),
)


def commands(connection: redis.Redis) -> int:
    stats: dict[str, Any] = connection.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values())


async def measure(url: str, prefix: str, reps: int) -> list[tuple[str, list[float], int]]:
    import httpx

    import jobd.web
    from jobd.client import Client

    rows = []
    counter = redis.Redis.from_url(url)
    async with Client(url, key_prefix=prefix) as client:
        app = jobd.web.create_app(client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, path in PAGES:
                assert (await http.get(path)).status_code == 200, path  # warm-up
                before = commands(counter)
                assert (await http.get(path)).status_code == 200
                sent = commands(counter) - before - 1  # less INFO itself
                times = []
                for _ in range(reps):
                    started = time.perf_counter()
                    response = await http.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, path
                rows.append((name, times, sent))
    counter.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1_000_000, help="queued jobs (default 1e6)")
    parser.add_argument("--reps", type=int, default=9, help="renders per page (default 9)")
    arguments = parser.parse_args()
    from bench.redis import RedisServer

    with RedisServer() as server:
        connection = server.client()
        started = time.perf_counter()
        fill_deep_queue(connection, "bench", arguments.jobs, 1100)
        print(f"queued {arguments.jobs:,} job ids in {time.perf_counter() - started:.1f} s "
              f"(redis-server {server.version()})")  # fmt: skip
        rows = asyncio.run(measure(server.url, "bench", arguments.reps))
        connection.close()
    print(f"\n{'page':32} {'median ms':>10} {'min':>8} {'max':>8} {'Redis commands':>15}")
    for name, times, sent in rows:
        print(f"{name:32} {statistics.median(times):10.1f} {min(times):8.1f} {max(times):8.1f} "
              f"{sent:15,}")  # fmt: skip


if __name__ == "__main__":
    main()
