"""The steps a driver runs: enqueue / bulk, drain, latency (see bench.adapters.common)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis.asyncio

from bench.adapters import body
from bench.adapters.peer import Options, Peer
from bench.adapters.workers import Workers

POLL_SECONDS = 0.002
MEMORY_EVERY_POLLS = 10
STALL_SECONDS = 30.0
WARMUP_JOBS = 100


def make_workers(peer: Peer, options: Options) -> Workers:
    log_path = options.logdir / f"{peer.name}-{options.tag}.log"
    env = {
        "BENCH_REDIS_URL": options.redis_url,
        "BENCH_COUNTER_URL": options.counter_url,
        "BENCH_CONCURRENCY": str(options.concurrency),
    }
    group = peer.group_command(options) if options.workers > 1 else None
    if group is not None:  # one command, its own worker processes (jobd --processes N)
        return Workers(group, 1, log_path, env)
    return Workers(peer.worker_command(options), options.workers, log_path, env)


def bench_client(url: str) -> redis.asyncio.Redis:
    """The driver's connection; no CLIENT SETINFO, so it adds nothing to the library's counts."""
    return redis.asyncio.Redis.from_url(url, lib_name=None, lib_version=None)


async def read_info(client: redis.asyncio.Redis) -> dict[str, Any]:
    command = ("INFO", "stats", "commandstats")
    info: dict[str, Any] = await client.execute_command(*command)  # type: ignore[no-untyped-call]
    return info


def command_metrics(info: dict[str, Any], jobs: int) -> dict[str, Any]:
    """Commands (including those run inside Lua scripts) and round trips per job."""
    commands: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            commands[key.removeprefix("cmdstat_")] = int(value["calls"])
    for name in ("info", "config|resetstat"):
        commands.pop(name, None)
    commands = {name: count for name, count in sorted(commands.items()) if count > 0}
    reads = int(info.get("total_reads_processed", 0)) - 1  # - the INFO itself
    return {
        "cmds_per_job": sum(commands.values()) / jobs,
        "round_trips_per_job": max(0, reads) / jobs,
        "commands": commands,
    }


async def enqueue_step(peer: Peer, options: Options) -> dict[str, Any]:
    bulk = options.step == "bulk"
    if bulk and peer.bulk_reason is not None:
        return {"na": peer.bulk_reason}
    client = bench_client(options.redis_url)
    await peer.open(options.redis_url)
    n = options.jobs
    warmup = list(range(-WARMUP_JOBS, 0))
    if bulk:
        await peer.enqueue_bulk("noop", warmup)
    else:
        for i in warmup:
            await peer.enqueue("noop", i)
    await client.config_resetstat()
    cpu_before = await redis_cpu_seconds(client)
    started = time.perf_counter()
    if bulk:
        for start in range(0, n, options.batch):
            await peer.enqueue_bulk("noop", range(start, min(n, start + options.batch)))
    else:
        for i in range(n):
            await peer.enqueue("noop", i)
    seconds = time.perf_counter() - started
    info = await read_info(client)
    cpu = await redis_cpu_seconds(client) - cpu_before
    await peer.close()
    await client.aclose()
    return {"jobs": n, "seconds": seconds, "jobs_per_s": n / seconds,
            "redis_cpu_us_per_job": cpu * 1e6 / n, **command_metrics(info, n)}  # fmt: skip


async def redis_cpu_seconds(client: redis.asyncio.Redis) -> float:
    """The library's redis-server's CPU time so far (user + system)."""
    cpu: dict[str, Any] = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def concurrent_step(peer: Peer, options: Options) -> dict[str, Any]:
    """W1c: `--concurrency` enqueues in flight at once from one process (a busy web app), N jobs
    in all: each of that many coroutines enqueues the next job as soon as its last one returned.
    A library whose enqueue is synchronous (Dramatiq) runs it in as many threads. Timed from the
    first enqueue to the last return; no worker runs."""
    client = bench_client(options.redis_url)
    await peer.open(options.redis_url)
    n = options.jobs
    blocking = type(peer).enqueue_blocking is not Peer.enqueue_blocking
    for i in range(-WARMUP_JOBS, 0):
        await peer.enqueue("noop", i)
    indices = iter(range(n))  # next() on a range iterator is atomic under the GIL

    async def producer() -> None:
        for i in indices:
            await peer.enqueue("noop", i)

    def blocking_producer() -> None:
        for i in indices:
            peer.enqueue_blocking("noop", i)

    await client.config_resetstat()
    cpu_before = await redis_cpu_seconds(client)
    started = time.perf_counter()
    if blocking:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(options.concurrency) as pool:
            await asyncio.gather(
                *(loop.run_in_executor(pool, blocking_producer) for _ in range(options.concurrency))
            )
    else:
        await asyncio.gather(*(producer() for _ in range(options.concurrency)))
    seconds = time.perf_counter() - started
    info = await read_info(client)
    cpu = await redis_cpu_seconds(client) - cpu_before
    queued = await client.dbsize()
    await peer.close()
    await client.aclose()
    return {"jobs": n, "producers": options.concurrency, "seconds": seconds,
            "jobs_per_s": n / seconds, "redis_cpu_us_per_job": cpu * 1e6 / n,
            "threads": blocking, "keys_after": queued, **command_metrics(info, n)}  # fmt: skip


def progress_metrics(series: list[tuple[float, int]], n: int) -> dict[str, float]:
    """Rates from the (seconds since spawn, jobs done) samples of a drain."""

    def first_at(count: float) -> tuple[float, int]:
        return next((t, done) for t, done in series if done >= count)

    t_first, done_first = first_at(1)
    t_last, _ = first_at(n)
    t10, done10 = first_at(0.1 * n)
    t90, done90 = first_at(0.9 * n)
    return {
        "seconds": t_last,
        "jobs_per_s": n / t_last,
        "startup_s": t_first,
        "steady_jobs_per_s": (done90 - done10) / (t90 - t10) if t90 > t10 else float("nan"),
        "after_first_jobs_per_s": (n - done_first) / (t_last - t_first)
        if t_last > t_first
        else float("nan"),
    }


async def drain_step(peer: Peer, options: Options) -> dict[str, Any]:
    client = bench_client(options.redis_url)
    counter = bench_client(options.counter_url)
    n = options.jobs
    await peer.open(options.redis_url)
    await peer.prepare(options.function, n, options.batch)
    await peer.close()
    await client.config_resetstat()
    workers = make_workers(peer, options)
    started = time.perf_counter()
    workers.start()
    series: list[tuple[float, int]] = []
    done = polls = 0
    last_change = started
    try:
        while done < n:
            await asyncio.sleep(POLL_SECONDS)
            count = int(await counter.get(body.DONE_KEY) or 0)
            polls += 1
            now = time.perf_counter()
            if count != done:
                series.append((now - started, count))
                done, last_change = count, now
            if polls % MEMORY_EVERY_POLLS == 0:
                workers.sample_memory()
            if failure := workers.failure():
                return {"na": failure}
            if now - last_change > STALL_SECONDS:
                return {"na": f"stalled: {done}/{n} jobs done, none for {STALL_SECONDS:.0f} s"}
        info = await read_info(client)
        workers.sample_memory()
    finally:
        workers.stop()
    extra_runs = int(await counter.get(body.DONE_KEY) or 0) - n
    await client.aclose()
    await counter.aclose()
    progress = progress_metrics(series, n)
    return {
        "jobs": n, "workers": options.workers, "concurrency": options.concurrency,
        **progress,
        **(llm_metrics(progress, n, options) if options.function == "llm" else {}),
        "peak_rss_mib": workers.memory.peak_mib(), "processes": workers.memory.processes(),
        "extra_runs": extra_runs,
        **command_metrics(info, n),
        **await peer.after_drain(options),
    }  # fmt: skip


def llm_metrics(progress: dict[str, float], n: int, options: Options) -> dict[str, float]:
    """W7: the first job started about one job's length before the first one ended, so the
    busy time is first start → last done; ideal = concurrency jobs per job length."""
    busy = progress["seconds"] - progress["startup_s"] + body.LLM_SECONDS
    ideal = options.concurrency / body.LLM_SECONDS
    return {
        "busy_seconds": busy,
        "busy_jobs_per_s": n / busy,
        "ideal_jobs_per_s": ideal,
        "of_ideal": n / busy / ideal,
        "startup_to_first_start_s": progress["startup_s"] - body.LLM_SECONDS,
    }


async def wait_for_starts(counter: redis.asyncio.Redis, workers: Workers, count: int) -> str | None:
    """Poll the start list until it has `count` entries; returns why it did not, or None."""
    deadline = time.perf_counter() + 60.0
    while await counter.llen(body.STARTS_KEY) < count:
        if failure := workers.failure():
            return failure
        if time.perf_counter() > deadline:
            got = await counter.llen(body.STARTS_KEY)
            return f"only {got}/{count} latency jobs started within 60 s"
        await asyncio.sleep(0.005)
    return None


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def paced_enqueue(peer: Peer, indices: Sequence[int], rate: float) -> list[float]:
    """Enqueue `stamp(i)` at a steady rate; returns each job's enqueue time (time.time())."""
    enqueued: list[float] = []
    started = time.perf_counter()
    for k, i in enumerate(indices):
        delay = started + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        enqueued.append(time.time())
        await peer.enqueue("stamp", i)
    return enqueued


async def latency_step(peer: Peer, options: Options) -> dict[str, Any]:
    client = bench_client(options.redis_url)
    counter = bench_client(options.counter_url)
    m = options.jobs
    workers = make_workers(peer, options)
    workers.start()
    try:
        await peer.open(options.redis_url)
        await paced_enqueue(peer, range(-WARMUP_JOBS, 0), options.rate)
        if failure := await wait_for_starts(counter, workers, WARMUP_JOBS):
            return {"na": f"warm-up: {failure}"}
        await counter.delete(body.STARTS_KEY)
        await client.config_resetstat()
        started = time.perf_counter()
        enqueued = await paced_enqueue(peer, range(m), options.rate)
        achieved_rate = m / (time.perf_counter() - started)
        if failure := await wait_for_starts(counter, workers, m):
            return {"na": failure}
        info = await read_info(client)
        entries = await counter.lrange(body.STARTS_KEY, 0, -1)
    finally:
        workers.stop()
        await peer.close()
    await client.aclose()
    await counter.aclose()
    latencies = []
    for entry in entries:
        index, start = entry.split()
        latencies.append((float(start) - enqueued[int(index)]) * 1000)
    latencies.sort()
    return {
        "jobs": m, "rate": options.rate, "achieved_rate": achieved_rate,
        "p50_ms": percentile(latencies, 0.50), "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99), "max_ms": latencies[-1],
        "mean_ms": sum(latencies) / len(latencies),
        # producer and worker together: both run during this step
        **command_metrics(info, m),
    }  # fmt: skip


STEPS = {"enqueue": enqueue_step, "bulk": enqueue_step, "drain": drain_step,
         "latency": latency_step, "concurrent": concurrent_step}  # fmt: skip
