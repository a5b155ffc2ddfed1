"""`python -m bench.limits [--jobs 20000] [--baseline REV]`: what limits cost and how closely they
hold, measured in one run on one private redis-server (jobd only: no peer has fleet-wide limits).

  U   drain of queued no-op jobs, one worker, concurrency 100 (W2's shape), no limit on them;
      with --baseline REV also the worker of that commit (a git worktree) on the same jobs
  R   the same drain under `rate = "5000/s"`: the rate reached, and the most starts in any one
      second (must not exceed 5,000)
  C   jobs awaiting 10 ms under `concurrency = 50` (worker concurrency 100): the rate reached
      against the ideal 50 / 10 ms = 5,000/s, and against a worker of concurrency 50 without a
      limit on the same jobs
  F   fairness: a backlog of group "big" (10 ms jobs, concurrency 100) and, meanwhile, 200 jobs of
      group "small" enqueued one every 20 ms: how long each small job waited to start
  K   Redis commands per job in U and R (INFO commandstats, the benchmark's own reads taken off)

Start times are the jobs' `started_at` (the Redis clock, ms). Writes bench/results/limits-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_py
import redis.asyncio

from bench.adapters.starts import most_in_a_second, per_full_second
from bench.redis import RedisServer
from jobd.client import Client, Job
from jobd.redis.keys import QueueKeys

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
LOG = sys.stderr
"""Where the workers' warnings and errors go."""
POLL = 0.25
"""Seconds between reads of the jobs' statuses while a scenario drains."""


JOBS = """
import asyncio

async def noop() -> None:
    pass

async def nap() -> None:
    await asyncio.sleep(0.01)
"""
"""The job functions, written as a module of their own beside the worker's tree: a --baseline
commit's tree has no bench/limits.py to import them from."""
JOBS_DIR = Path(tempfile.mkdtemp(prefix="jobd-bench-jobs-"))
(JOBS_DIR / "limits_bench_jobs.py").write_text(JOBS)


def config(url: str, prefix: str, *, concurrency: int = 100, limits: str = "",
           uses: str = "") -> str:  # fmt: skip
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{prefix}"\n\n'
        f"[worker]\nconcurrency = {concurrency}\n\n"
        '[http]\nlisten = "127.0.0.1:0"\n\n'
        f"{limits}\n"
        f'[functions.noop]\npath = "limits_bench_jobs:noop"\n{uses}\n'
        f'[functions.nap]\npath = "limits_bench_jobs:nap"\n{uses}\n'
    )


class Worker:
    """`python -m jobd run` on a generated jobs.toml, from this tree or another one."""

    def __init__(self, text: str, tree: Path = ROOT) -> None:
        self.file = Path(tempfile.mkstemp(suffix=".toml", prefix="jobd-bench-")[1])
        self.file.write_text(text)
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(JOBS_DIR)])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobd", "run", "--config", str(self.file),
             "--log-level", "warning"],
            cwd=tree, env=environ, stdout=subprocess.DEVNULL, stderr=LOG,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.file.unlink(missing_ok=True)


async def wait_done(
    connection: redis_py.asyncio.Redis,
    prefix: str,
    jobs: Sequence[Job],
    guard: float,
    worker: Worker,
) -> int:
    """Poll the statuses until every job ended; returns the commands the polling sent."""
    pending = list(jobs)
    sent = 0
    deadline = time.monotonic() + guard
    while pending:
        if worker.process.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} jobs still not done after {guard:g}s")
        await asyncio.sleep(POLL)
        async with connection.pipeline(transaction=False) as pipe:
            for job in pending:
                pipe.hget(QueueKeys(prefix, job.queue).job(job.id), "status")
            statuses = await pipe.execute()
        sent += len(pending)
        pending = [job for job, s in zip(pending, statuses, strict=True) if s != b"succeeded"]
    return sent


async def times(
    connection: redis_py.asyncio.Redis, prefix: str, jobs: Sequence[Job]
) -> list[tuple[int, int]]:
    """(enqueued_at, started_at) of each job, ms."""
    async with connection.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hmget(QueueKeys(prefix, job.queue).job(job.id), "enqueued_at", "started_at")
        rows = await pipe.execute()
    return [(int(row[0]), int(row[1])) for row in rows]


def rate(starts: Sequence[int]) -> float:
    span = (max(starts) - min(starts)) / 1000
    return (len(starts) - 1) / span if span > 0 else float("inf")


def commands(connection: redis_py.Redis) -> int:
    stats = connection.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


async def drain(url: str, prefix: str, text: str, function: str, count: int,
                tree: Path = ROOT, **options: object) -> tuple[list[tuple[int, int]], float]:  # fmt: skip
    """Enqueue `count` jobs, start a worker, wait until all ran; (times, commands per job)."""
    sync = redis_py.Redis.from_url(url)
    async with Client(url, key_prefix=prefix) as client:
        jobs: list[Job] = []
        for start in range(0, count, 1000):
            batch = [(function, (), {}) for _ in range(min(1000, count - start))]
            jobs += await client.enqueue_many(batch, **options)  # type: ignore[arg-type]
        before = commands(sync)
        worker = Worker(text, tree)
        try:
            polled = await wait_done(client.redis, prefix, jobs, 600, worker)
        finally:
            worker.stop()
        used = commands(sync) - before - polled - 1  # less the benchmark's reads and INFO
        return await times(client.redis, prefix, jobs), used / count


async def fairness(url: str, prefix: str, backlog: int) -> list[float]:
    """Start delays (ms) of the small group's jobs behind the big group's backlog."""
    async with Client(url, key_prefix=prefix) as client:
        big: list[Job] = []
        for start in range(0, backlog, 1000):
            big += await client.enqueue_many([("nap", (), {})] * min(1000, backlog - start),
                                             group="big")  # fmt: skip
        worker = Worker(config(url, prefix))
        small: list[Job] = []
        try:
            # the worker is up and busy with the backlog before the small group's jobs come
            await wait_done(client.redis, prefix, big[:200], 600, worker)
            for _ in range(200):
                small.append(await client.enqueue("nap", group="small"))
                await asyncio.sleep(0.02)  # the small tenant's own pace
            await wait_done(client.redis, prefix, [*small, *big], 600, worker)
        finally:
            worker.stop()
        return [
            float(started - enqueued)
            for enqueued, started in await times(client.redis, prefix, small)
        ]


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_benchmark(main: Any) -> Any:
    """asyncio.run(main), then remove the job modules written for the workers (JOBS_DIR)."""
    try:
        return asyncio.run(main)
    finally:
        shutil.rmtree(JOBS_DIR, ignore_errors=True)


def publish(name: str, report: str, outcome: Any = None) -> None:
    """Print the report and keep it as results/<name>-latest.md (the figures as .json)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-latest.md").write_text(report)
    if outcome is not None:
        (RESULTS / f"{name}-latest.json").write_text(
            json.dumps(outcome, indent=2, default=str) + "\n"
        )
    print(report)


def remove_tree(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False,
                   capture_output=True)  # fmt: skip


def baseline_tree(revision: str) -> Path:
    tree = Path(tempfile.mkdtemp(prefix="jobd-bench-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    return tree


async def main(jobs: int, baseline: str | None) -> str:
    lines = [f"# Limits benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"`python -m bench.limits --jobs {jobs}" + (f" --baseline {baseline}" if baseline else "")
             + f"` on {os.cpu_count()} cores; one worker, concurrency 100.", "",
             "| scenario | figure |", "|---|---|"]  # fmt: skip
    limit_5000 = '[limits.fast]\nrate = "5000/s"\n'
    limit_50 = "[limits.slots]\nconcurrency = 50\n"
    with RedisServer() as server:
        url = server.url
        # U and its baseline interleaved, twice each: the best of two against the best of two
        tree = baseline_tree(baseline) if baseline else None
        ours: list[float] = []
        theirs: list[float] = []
        plain_cmds = 0.0
        try:
            for rep in range(2):
                plain, plain_cmds = await drain(
                    url, f"u{rep}", config(url, f"u{rep}"), "noop", jobs
                )
                ours.append(rate([s for _, s in plain]))
                if tree is not None:
                    old, _ = await drain(url, f"b{rep}", config(url, f"b{rep}"), "noop", jobs, tree)
                    theirs.append(rate([s for _, s in old]))
        finally:
            if tree is not None:
                remove_tree(tree)
        lines.append(f"| U: unlimited drain (best of 2) | {max(ours):,.0f} jobs/s, "
                     f"{plain_cmds:.1f} Redis commands per job |")  # fmt: skip
        if theirs:
            lines.append(f"| U at {baseline}, before limits (best of 2) | {max(theirs):,.0f} "
                         f"jobs/s: this tree drains at {max(ours) / max(theirs):.0%} of it |")  # fmt: skip
        limited, limited_cmds = await drain(
            url, "r", config(url, "r", limits=limit_5000, uses='limits = ["fast"]'), "noop", jobs
        )
        starts = [s for _, s in limited]
        reached = per_full_second(starts)
        lines.append(f'| R: rate = "5000/s" | {reached:,.0f} starts per full second '
                     f"({reached / 5000:.0%} of the limit); most starts in any second: "
                     f"{most_in_a_second(starts):,}; {limited_cmds:.1f} commands per job "
                     f"(+{limited_cmds - plain_cmds:.1f}) |")  # fmt: skip
        slow, _ = await drain(
            url,
            "c",
            config(url, "c", limits=limit_50, uses='limits = ["slots"]'),
            "nap",
            min(jobs, 10_000),
        )
        reached = rate([s for _, s in slow])
        plain_50, _ = await drain(url, "c0", config(url, "c0", concurrency=50), "nap",
                                  min(jobs, 10_000))  # fmt: skip
        unlimited = rate([s for _, s in plain_50])
        lines.append(f"| C: concurrency = 50, 10 ms jobs | {reached:,.0f} jobs/s "
                     f"({reached / 5000:.0%} of the ideal 5,000/s; {reached / unlimited:.0%} of "
                     f"the same jobs on a worker of concurrency 50 without a limit, "
                     f"{unlimited:,.0f} jobs/s) |")  # fmt: skip
        delays = await fairness(url, "f", jobs)
        lines.append(f"| F: small group behind a {jobs:,}-job backlog (while it lasts) | start delay p50 "
                     f"{statistics.median(delays):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms, "
                     f"max {max(delays):.1f} ms |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.limits",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain (default 20000)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also drain with the worker of this commit (a git worktree)")  # fmt: skip
    arguments = parser.parse_args()
    publish("limits", run_benchmark(main(arguments.jobs, arguments.baseline)))
