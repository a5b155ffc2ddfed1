"""`python -m bench.rediscost [--jobs 20000] [--baseline REV] [--reps 3]`: what each job costs the
Redis server in CPU, per operation and for a whole drain, with and without AOF, this tree beside
`--baseline` (a git worktree of REV) in one run on one private redis-server.

All queues of a fleet share one Redis core (a queue lives in one hash slot, even on Cluster), so
Redis CPU per job is the fleet's ceiling per queue: 25 us per job is 40,000 jobs/s.

  O   per operation, driven by a script in a process of its own (the tree's jobd on its path):
      enqueue_many (1,000 per call), enqueue one at a time (sequential), enqueue with 200 calls
      in flight, claim (100 per call, as a busy worker), finish (100 per call), claim and finish
      one job per call (a worker that keeps up with a trickle). INFO cpu (used_cpu_user +
      used_cpu_sys) before and after each, over the jobs it handled.
  D   a drain: `--jobs` no-op jobs queued first, then one worker (`python -m jobd run`,
      concurrency 100) runs them all; Redis CPU from the worker's start to the last job's end,
      per job. The benchmark polls with two ZCARDs every 0.25 s (its own cost is left in: under
      0.01 us per job).
  V   the variant of an outside harness: 10,000 jobs whose body INCRs a counter on the queue's own
      Redis, as in a small deployment. The INCRs' own cost, measured alone (100 tasks INCRing at
      once, the same number of times), is given beside it.

The INFO cpu figures include the kernel's work for the server's sockets (a request that arrives
alone wakes Redis, ~20 us on these machines): that is why calls that carry many jobs are cheap.
Every figure is the median of `--reps` runs (alternating trees: A B A B ...). Writes
bench/results/rediscost-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_py
import redis.asyncio

from bench import limits, machine
from bench.limits import JOBS_DIR, Worker, baseline_tree, publish, remove_tree, run_benchmark
from bench.redis import RedisServer

PREFIX = "rc"
VARIANT_JOBS = 10_000
BODIES = """
import os

import redis.asyncio

_client = None


async def nothing() -> None:
    pass


async def incr() -> None:
    global _client
    if _client is None:
        _client = redis.asyncio.Redis.from_url(os.environ["RC_COUNTER_URL"])
    await _client.incr("rc:done")
"""
(JOBS_DIR / "rediscost_jobs.py").write_text(BODIES)

OPERATIONS = '''
"""Per-operation Redis CPU of the jobd on sys.path; prints one JSON line."""
import asyncio, json, sys

import redis as redis_py
import redis.asyncio

from jobd.client import Client
from jobd.worker.store import Finish, Store

URL, JOBS = sys.argv[1], int(sys.argv[2])
SINGLE = max(JOBS // 10, 100)


def cpu(connection):
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def main():
    sync = redis_py.Redis.from_url(URL)
    figures = {}
    marks = [cpu(sync)]

    def mark(name, count):
        marks.append(cpu(sync))
        figures[name] = 1e6 * (marks[-1] - marks[-2]) / count

    async with Client(URL, key_prefix="op") as client:
        store = Store(redis.asyncio.Redis.from_url(URL), prefix="op", worker_id="w1",
                      lease_ms=30_000, max_payload_bytes=1 << 20)
        await client.enqueue("noop")  # scripts loaded, connections open
        for job in (await store.claim("default", 1)).jobs:
            await store.finish("default", [Finish(job, "succeeded", b"null", 3_600_000, False)])
        mark("warm-up", 1)
        for start in range(0, JOBS, 1000):
            await client.enqueue_many([("noop", (), {})] * min(1000, JOBS - start))
        mark("enqueue_many, 1,000 per call", JOBS)
        claimed = []
        while jobs := (await store.claim("default", 100)).jobs:
            claimed += jobs
        mark("claim, 100 per call", len(claimed))
        for start in range(0, len(claimed), 100):
            await store.finish("default", [Finish(job, "succeeded", b"null", 3_600_000, False)
                                           for job in claimed[start:start + 100]])
        mark("finish, 100 per call", len(claimed))
        for _ in range(SINGLE):
            await client.enqueue("noop")
        mark("enqueue, one call at a time", SINGLE)
        gate = asyncio.Semaphore(200)

        async def one():
            async with gate:
                await client.enqueue("noop")

        await asyncio.gather(*(one() for _ in range(JOBS)))
        mark("enqueue, 200 calls in flight", JOBS)
        claimed = []
        for _ in range(SINGLE):
            claimed += (await store.claim("default", 1)).jobs
        mark("claim, one job per call", SINGLE)
        for job in claimed:
            await store.finish("default", [Finish(job, "succeeded", b"null", 3_600_000, False)])
        mark("finish, one job per call", SINGLE)
    del figures["warm-up"]
    print(json.dumps(figures))


asyncio.run(main())
'''
(JOBS_DIR / "rediscost_operations.py").write_text(OPERATIONS)


def redis_cpu(connection: redis_py.Redis) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def config(url: str, function: str) -> str:
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{PREFIX}"\n\n[worker]\nconcurrency = 100\n\n'
        f'[http]\nlisten = "127.0.0.1:0"\n\n'
        f'[functions.{function}]\npath = "rediscost_jobs:{function}"\n'
    )


def operations(url: str, jobs: int, tree: Path) -> dict[str, float]:
    environ = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(JOBS_DIR / "rediscost_operations.py"), url, str(jobs)],
        cwd=tree, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"operations on {tree} failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


async def drain(server: RedisServer, jobs: int, function: str, tree: Path) -> float:
    """Redis CPU per job of one worker draining `jobs` queued jobs of `function`."""
    from jobd.client import Client  # this tree's client: the queued jobs look the same to both
    from jobd.redis.keys import QueueKeys

    sync = server.client()
    sync.flushall()
    keys = QueueKeys(PREFIX, "default")
    async with Client(server.url, key_prefix=PREFIX) as client:
        for start in range(0, jobs, 1000):
            await client.enqueue_many([(function, (), {})] * min(1000, jobs - start))
    before = redis_cpu(sync)
    worker = Worker(config(server.url, function), tree)
    try:
        deadline = time.monotonic() + 600
        while sync.zcard(keys.queued) or sync.zcard(keys.running):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the worker from {tree} did not drain (exit {worker.process.poll()})"
                )
            await asyncio.sleep(limits.POLL)
        used = redis_cpu(sync) - before
    finally:
        worker.stop()
    sync.close()
    return 1e6 * used / jobs


async def incr_alone(url: str, count: int) -> float:
    """Redis CPU per INCR when 100 tasks send `count` of them, as the variant's bodies do."""
    sync = redis_py.Redis.from_url(url)
    connection = redis.asyncio.Redis.from_url(url)
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        async with gate:
            await connection.incr("rc:alone")

    await connection.ping()
    before = redis_cpu(sync)
    await asyncio.gather(*(one() for _ in range(count)))
    used = redis_cpu(sync) - before
    await connection.aclose()
    sync.close()
    return 1e6 * used / count


async def measure(jobs: int, reps: int, baseline: str | None) -> dict[str, Any]:
    trees = {"this tree": limits.ROOT}
    if baseline:
        trees["baseline"] = baseline_tree(baseline)
    runs: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        for aof in ("no", "yes"):
            with RedisServer() as server:
                server.client().config_set("appendonly", aof)
                os.environ["RC_COUNTER_URL"] = server.url
                per_aof = runs.setdefault(f"appendonly {aof}", {})
                for _ in range(reps):
                    for name, tree in trees.items():
                        figures = per_aof.setdefault(name, {})
                        server.client().flushall()
                        for key, value in operations(server.url, jobs, tree).items():
                            figures.setdefault(key, []).append(value)
                        drained = await drain(server, jobs, "nothing", tree)
                        figures.setdefault("drain (claim + finish + heartbeats)", []).append(
                            drained
                        )
                        variant = await drain(server, VARIANT_JOBS, "incr", tree)
                        figures.setdefault(
                            "variant: drain, body INCRs the queue's Redis", []
                        ).append(variant)
                    incr = await incr_alone(server.url, VARIANT_JOBS)
                    per_aof.setdefault("INCR alone", {}).setdefault("per INCR", []).append(incr)
    finally:
        if baseline:
            remove_tree(trees["baseline"])
    return {
        aof: {name: {key: statistics.median(values) for key, values in figures.items()}
              for name, figures in per_tree.items()}
        for aof, per_tree in runs.items()
    }  # fmt: skip


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    command = f"python -m bench.rediscost --jobs {args.jobs} --reps {args.reps}"
    if args.baseline:
        command += f" --baseline {args.baseline}"
    lines = [
        f"# Redis CPU per job, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
        f"`{command}`; {machine.one_line(machine.describe())}; redis {result['redis']}.", "",
        "INFO cpu (user + sys) of the Redis server over each operation, per job, median of "
        f"{args.reps}. See the module docstring for the method.", "",
    ]  # fmt: skip
    for aof, per_tree in result["figures"].items():
        here = per_tree["this tree"]
        base = per_tree.get("baseline")
        header = "| operation | this tree (us/job) |"
        rule = "|---|---:|"
        if base:
            header += f" baseline {args.baseline} (us/job) | this / baseline |"
            rule += "---:|---:|"
        lines += [f"## {aof}", "", header, rule]
        for key, value in here.items():
            row = f"| {key} | {value:.1f} |"
            if base and key in base:
                row += f" {base[key]:.1f} | {value / base[key]:.2f} |"
            lines.append(row)
        incr = per_tree["INCR alone"]["per INCR"]
        lines += ["", f"The variant's bodies: one INCR alone costs {incr:.1f} us of Redis CPU.", ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rediscost", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per operation and drain")
    parser.add_argument("--reps", type=int, default=3, help="runs per tree (median reported)")
    parser.add_argument("--baseline", help="a git revision to measure beside this tree")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with RedisServer() as server:
        version = server.version()
    figures = run_benchmark(measure(args.jobs, args.reps, args.baseline))
    result = {"redis": version, "figures": figures, "settings": vars(args)}
    publish("rediscost", render(result, args), result)


if __name__ == "__main__":
    main()
