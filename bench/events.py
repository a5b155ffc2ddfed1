"""`python -m bench.events [--baseline REV] [--jobs 20000] [--seconds 10] ...`: what job events
cost and how fast they arrive, measured in one run on one private redis-server (jobd only).

  L   latency: `--readers` jobs (100) run at once, each emitting `--rate` events/s (10) for
      `--seconds` (10), their emits spread evenly in time (1,000 events/s in all); the producer
      (this process) follows every job with `job.events()`. Each event carries `time.time()` taken
      just before `emit` in the worker; the reader takes `time.time()` when the iterator yields it.
  T   throughput: `--readers` jobs each emit `--burst` events (2,000) in a tight loop, nobody
      reading; then again with `await asyncio.sleep(0)` after each emit (the jobs take turns, so
      the batches are small). Events written to Redis (XLEN of the streams, lifecycle events left
      out) over the time from the first job's start to the last one's end (the Redis clock: a job
      is stored as ended only after all it emitted is written). Also the worker's and Redis's CPU
      time over the run, and the mean events per emit.lua call (XADD calls / XTRIM calls, both
      from INFO commandstats: each call trims once; lifecycle XADDs taken off).
  D   cost for jobs that emit nothing: `--jobs` no-op jobs queued first, then one worker
      (concurrency 100) drains them, `--reps` times each (5), alternating: this tree, the
      `--baseline` commit (default d6b8785, before events; a git worktree), and this tree with
      every job's stream turned on before the drain (follow.lua, as `job.events()` does first),
      so that the worker writes the "started" and "succeeded" events of each. Jobs/s is
      `--jobs` over the first start to the last finish (the Redis clock); Redis commands per job
      (the benchmark's own reads taken off) and µs Redis spent in scripts per job, both from INFO
      commandstats. The drains alternate (A B F A B F ...) and the report gives medians.

Every worker is the daemon, `python -m jobd run`, in a process of its own (bench.limits.Worker).
Prints the report and writes bench/results/events-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_py
import redis.asyncio

from bench import limits, machine
from bench.limits import (
    Worker,
    baseline_tree,
    commands,
    percentile,
    publish,
    remove_tree,
    run_benchmark,
    wait_done,
)
from bench.redis import RedisServer
from jobd.client import Client, Job
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_async_many

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_BASELINE = "d6b8785"
LEAD = 1.5
"""Seconds between enqueueing L's jobs and their first emit: time for the readers to start."""
BATCH = 1000

JOBS = """
import asyncio
import time

import jobd


async def noop() -> None:
    pass


async def ticker(first: float, count: int, interval: float) -> None:
    job = jobd.current_job()
    for i in range(count):
        delay = first + i * interval - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await job.emit("tick", {"i": i, "t": time.time()})


async def burst(count: int, yielding: bool) -> None:
    job = jobd.current_job()
    for i in range(count):
        await job.emit("token", {"i": i})
        if yielding:
            await asyncio.sleep(0)
"""
"""The job functions, a module beside bench.limits' own (in its JOBS_DIR, which its Worker puts on
the worker's PYTHONPATH): a --baseline commit's tree has no bench/events.py to import."""
JOBS_MODULE = "events_bench_jobs"
(limits.JOBS_DIR / f"{JOBS_MODULE}.py").write_text(JOBS)


def config(url: str, prefix: str, *, concurrency: int = 100) -> str:
    functions = "".join(
        f'[functions.{name}]\npath = "{JOBS_MODULE}:{name}"\n\n'
        for name in ("noop", "ticker", "burst")
    )
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{prefix}"\n\n'
        f"[worker]\nconcurrency = {concurrency}\n\n"
        '[http]\nlisten = "127.0.0.1:0"\n\n'
        f"{functions}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(connection: redis_py.Redis) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_usec(connection: redis_py.Redis) -> int:
    """µs Redis spent in scripts so far (EVALSHA and EVAL, the commands they call included)."""
    stats = connection.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("evalsha", "eval"))


def calls(connection: redis_py.Redis, command: str) -> int:
    entry = connection.info("commandstats").get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def enqueue(client: Client, function: str, args: Sequence[tuple[Any, ...]]) -> list[Job]:
    jobs: list[Job] = []
    for start in range(0, len(args), BATCH):
        jobs += await client.enqueue_many([(function, a, {}) for a in args[start : start + BATCH]])
    return jobs


async def warm_up(client: Client) -> None:
    """One job through the worker: it is up, its scripts loaded."""
    await (await client.enqueue("noop")).result(timeout=60)


async def span_ms(connection: redis.asyncio.Redis, prefix: str, jobs: Sequence[Job]) -> int:
    """ms from the first job's start to the last one's finish (the Redis clock)."""
    async with connection.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hmget(QueueKeys(prefix, job.queue).job(job.id), "started_at", "finished_at")
        rows = await pipe.execute()
    return max(int(r[1]) for r in rows) - min(int(r[0]) for r in rows)


# -- L: latency ------------------------------------------------------------------------------------


async def latency(url: str, readers: int, rate: float, seconds: float) -> dict[str, Any]:
    prefix = "lat"
    interval, count = 1 / rate, round(rate * seconds)
    worker = Worker(config(url, prefix, concurrency=readers + 10))
    try:
        async with Client(url, key_prefix=prefix) as client:
            await warm_up(client)
            first = time.time() + LEAD
            jobs = await enqueue(
                client,
                "ticker",
                [(first + k * interval / readers, count, interval) for k in range(readers)],
            )
            delays: list[float] = []
            others: Counter[str] = Counter()

            async def read(job: Job) -> None:
                async for event in job.events():
                    if event.event == "tick":
                        delays.append(time.time() - event.data["t"])
                    else:
                        others[event.event] += 1

            began = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(read(job) for job in jobs)), LEAD + seconds + 60
            )
            took = time.perf_counter() - began
    finally:
        worker.stop()
    ms = sorted(d * 1000 for d in delays)
    return {
        "readers": readers,
        "events_per_s_per_job": rate,
        "seconds": seconds,
        "events_expected": readers * count,
        "events_read": len(ms),
        "other_events": dict(others),
        "read_rate_per_s": len(ms) / (took - LEAD),
        "p50_ms": percentile(ms, 0.50),
        "p90_ms": percentile(ms, 0.90),
        "p99_ms": percentile(ms, 0.99),
        "p999_ms": percentile(ms, 0.999),
        "max_ms": ms[-1],
        "min_ms": ms[0],
        "mean_ms": statistics.fmean(ms),
    }


# -- T: throughput ---------------------------------------------------------------------------------


async def throughput(url: str, jobs: int, per_job: int, yielding: bool) -> dict[str, Any]:
    prefix = "thr"
    sync = redis_py.Redis.from_url(url)
    worker = Worker(config(url, prefix, concurrency=jobs))
    try:
        async with Client(url, key_prefix=prefix) as client:
            await warm_up(client)
            xadd, xtrim = calls(sync, "xadd"), calls(sync, "xtrim")
            cpu_worker, cpu_redis = cpu_seconds(worker.process.pid), redis_cpu(sync)
            began = time.perf_counter()
            handles = await enqueue(client, "burst", [(per_job, yielding)] * jobs)
            await wait_done(client.redis, prefix, handles, 600, worker)
            wall = time.perf_counter() - began
            cpu_worker = cpu_seconds(worker.process.pid) - cpu_worker
            cpu_redis = redis_cpu(sync) - cpu_redis
            xadd, xtrim = calls(sync, "xadd") - xadd, calls(sync, "xtrim") - xtrim
            span = await span_ms(client.redis, prefix, handles)
            async with client.redis.pipeline(transaction=False) as pipe:
                for job in handles:
                    keys = QueueKeys(prefix, job.queue)
                    pipe.xlen(keys.events(job.id))
                    pipe.hget(keys.job(job.id), "ev")
                replies = await pipe.execute()
    finally:
        worker.stop()
        sync.close()
    lengths, ids = replies[::2], [int(n) for n in replies[1::2]]
    written = sum(lengths) - 2 * jobs  # less each job's "started" and "succeeded"
    # the ids of events the worker dropped (its buffer full) are skipped: the job hash's count
    # of ids ('ev') runs ahead of the stream's length
    dropped = [n - length for n, length in zip(ids, lengths, strict=True)]
    return {
        "jobs": jobs,
        "yielding": yielding,
        "events_per_job": per_job,
        "events_emitted": jobs * per_job,
        "events_written": written,
        "events_dropped": sum(dropped),
        "jobs_with_drops": sum(1 for n in dropped if n),
        "span_s": span / 1000,
        "events_per_s": written / (span / 1000),
        "wall_s_enqueue_to_done": wall,
        "worker_cpu_s": cpu_worker,
        "redis_cpu_s": cpu_redis,
        "emit_calls": xtrim,
        "events_per_emit_call": (xadd - 2 * jobs) / xtrim if xtrim else float("nan"),
    }


# -- D: drains of jobs that emit nothing -----------------------------------------------------------


async def drain(url: str, prefix: str, count: int, tree: Path, follow: bool) -> dict[str, float]:
    """Enqueue `count` no-op jobs (with `follow`, turn each one's stream on), start a worker from
    `tree`, wait until all ran; jobs/s and Redis commands per job."""
    sync = redis_py.Redis.from_url(url)
    sync.flushdb()
    async with Client(url, key_prefix=prefix) as client:
        jobs = await enqueue(client, "noop", [()] * count)
        if follow:
            for start in range(0, count, BATCH):
                await run_async_many(
                    client.redis,
                    "follow",
                    [
                        ([keys.job(job.id), keys.events(job.id)], [job.id])
                        for job in jobs[start : start + BATCH]
                        for keys in [QueueKeys(prefix, job.queue)]
                    ],
                )
        figures = await measured_drain(client, sync, prefix, jobs, config(url, prefix), tree)
        if follow:  # every stream: started, succeeded
            async with client.redis.pipeline(transaction=False) as pipe:
                for job in jobs:
                    pipe.xlen(QueueKeys(prefix, job.queue).events(job.id))
                lengths = await pipe.execute()
            if set(lengths) != {2}:
                raise SystemExit(f"followed drain: stream lengths {Counter(lengths)}, not all 2")
    sync.close()
    return figures


async def measured_drain(
    client: Client, sync: redis_py.Redis, prefix: str, jobs: Sequence[Job], text: str, tree: Path
) -> dict[str, float]:
    """Start a worker from `tree` on the jobs.toml `text`, wait until `jobs` (enqueued) all ran:
    jobs/s from first start to last end (Redis clock), Redis commands and µs of scripts per job."""
    before, scripts = commands(sync), script_usec(sync)
    worker = Worker(text, tree)
    try:
        polled = await wait_done(client.redis, prefix, jobs, 600, worker)
    finally:
        worker.stop()
    used = commands(sync) - before - polled - 1  # less the benchmark's reads and INFO
    scripts = script_usec(sync) - scripts
    span = await span_ms(client.redis, prefix, jobs)
    return {
        "jobs_per_s": len(jobs) / (span / 1000),
        "commands_per_job": used / len(jobs),
        "script_us_per_job": scripts / len(jobs),
    }


async def drains(
    url: str, count: int, reps: int, baseline: str | None
) -> dict[str, list[dict[str, float]]]:
    tree = baseline_tree(baseline) if baseline else None
    runs: dict[str, list[dict[str, float]]] = {"this tree": [], "baseline": [], "followed": []}
    try:
        for rep in range(reps):
            runs["this tree"].append(await drain(url, f"a{rep}", count, limits.ROOT, False))
            if tree is not None:
                runs["baseline"].append(await drain(url, f"b{rep}", count, tree, False))
            runs["followed"].append(await drain(url, f"f{rep}", count, limits.ROOT, True))
    finally:
        if tree is not None:
            remove_tree(tree)
    return {name: found for name, found in runs.items() if found}


# -- the report ------------------------------------------------------------------------------------


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def drained(runs: list[dict[str, float]]) -> str:
    return (
        f"{median(runs, 'jobs_per_s'):,.0f} jobs/s; per job {median(runs, 'commands_per_job'):.1f} "
        f"Redis commands, {median(runs, 'script_us_per_job'):.1f} µs in scripts"
    )


def render(result: dict[str, Any]) -> str:
    args, lat, dr = result["args"], result["latency"], result["drains"]
    lines = [
        f"# Events benchmark, {result['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"- Machine: {machine.one_line(result['machine'])}; redis-server {result['redis']}",
        f"- jobd commit {result['machine']['jobd_commit']}; every worker `python -m jobd run` in "
        "a process of its own, the readers in this one",
        "",
        "| scenario | figure | target |",
        "|---|---|---|",
        f"| L: emit -> `job.events()`, {lat['readers']} jobs x {lat['events_per_s_per_job']:g} "
        f"events/s for {lat['seconds']:g} s ({lat['readers'] * lat['events_per_s_per_job']:,.0f} "
        f"events/s), one reader per job | p50 {lat['p50_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms, "
        f"p99 {lat['p99_ms']:.2f} ms, p99.9 {lat['p999_ms']:.2f} ms, max {lat['max_ms']:.2f} ms; "
        f"{lat['events_read']:,} of {lat['events_expected']:,} events read "
        f"({lat['read_rate_per_s']:,.0f}/s) | p50 <= 2 ms, p99 <= 10 ms |",
    ]
    for thr in result["throughput"]:
        how = (
            "emits, `await asyncio.sleep(0)` after each"
            if thr["yielding"]
            else "emits in a tight loop"
        )
        lines.append(
            f"| T: {thr['jobs']} jobs x {thr['events_per_job']:,} {how}, one worker "
            f"| {thr['events_per_s']:,.0f} events/s written ({thr['events_written']:,} of "
            f"{thr['events_emitted']:,} events, first start to last end {thr['span_s']:.2f} s; "
            f"dropped by the worker: {thr['events_dropped']:,}, of "
            f"{thr['jobs_with_drops']} jobs); "
            f"{thr['events_per_emit_call']:.1f} events per emit.lua call; CPU: worker "
            f"{thr['worker_cpu_s']:.2f} s, Redis {thr['redis_cpu_s']:.2f} s | >= 50,000 events/s |"
        )
    ours = dr["this tree"]
    lines.append(
        f"| D: drain of {args['jobs']:,} no-op jobs, concurrency 100, this tree (median of "
        f"{len(ours)}) | {drained(ours)} | |"
    )
    if "baseline" in dr:
        theirs = dr["baseline"]
        ratio = median(ours, "jobs_per_s") / median(theirs, "jobs_per_s")
        lines.append(
            f"| D at {args['baseline']}, before events (median of {len(theirs)}) | "
            f"{drained(theirs)}; this tree drains at {ratio:.1%} of it | no cost for jobs "
            "without events |"
        )
    followed = dr["followed"]
    ratio = median(followed, "jobs_per_s") / median(ours, "jobs_per_s")
    lines.append(
        f"| D with every stream on (lifecycle events written; median of {len(followed)}) | "
        f"{drained(followed)}; {ratio:.1%} of the drain without | |"
    )
    for thr in result["throughput"]:
        if thr["events_dropped"]:
            lines += [
                "",
                f"T dropped {thr['events_dropped']:,} events (yielding: {thr['yielding']}), Redis "
                "healthy throughout: emitters that waited longer than the writer's FULL_WAIT (1 s) "
                "for room in its full buffer (events.buffer) dropped their event, and the same job's "
                "next emits were dropped at once (`_overflowing`) without yielding to the writer.",
            ]
    lines += ["", "Every drain, in run order (jobs/s):", ""]
    for name, runs in dr.items():
        lines.append(f"- {name}: " + ", ".join(f"{run['jobs_per_s']:,.0f}" for run in runs))
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    command = " ".join(["python -m bench.events", *sys.argv[1:]])
    result: dict[str, Any] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": command,
        "machine": machine.describe(),
        "args": vars(args),
    }
    with RedisServer() as server:
        result["redis"] = server.version()
        url = server.url
        print("L: latency ...", flush=True)
        result["latency"] = await latency(url, args.readers, args.rate, args.seconds)
        server.reset()
        print("T: throughput ...", flush=True)
        result["throughput"] = [
            await throughput(url, args.readers, args.burst, yielding) for yielding in (False, True)
        ]
        server.reset()
        print("D: drains ...", flush=True)
        result["drains"] = await drains(url, args.jobs, args.reps, args.baseline or None)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.events", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--readers", type=int, default=100,
                        help="jobs running at once in L and T (default 100)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=10.0,
                        help="L: events/s each job emits (default 10)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="L: how long each job emits (default 10)")  # fmt: skip
    parser.add_argument("--burst", type=int, default=2000,
                        help="T: events each job emits (default 2000)")  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=20_000, help="D: jobs per drain (default 20000)"
    )
    parser.add_argument("--reps", type=int, default=5, help="D: drains of each kind (default 5)")
    parser.add_argument("--baseline", metavar="REV", default=DEFAULT_BASELINE,
                        help=f"D: also drain with the worker of this commit (default "
                        f"{DEFAULT_BASELINE}, before events; '' for none)")  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    outcome = run_benchmark(main(parse_args()))
    publish("events", render(outcome), outcome)
