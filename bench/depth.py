"""`python -m bench.depth [--deep 1000000] [--jobs 20000]`: does a deep queue slow jobd's worker?

Issue 6 asks that no command on the hot path grows with the queue's depth. This fills the queue
twice — `--jobs` no-op jobs, then `--deep` — starts one jobd worker on each (as W2 does:
`python -m jobd run`, concurrency 100, every job INCRs the benchmark's counter) and times the first
`--jobs` completions after the first thousand (so startup is left out). Redis's SLOWLOG, at 1 ms,
collects every slow command of the deep run. It prints the two rates, their ratio, the slow
commands and Redis's memory, and writes bench/results/depth-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench import machine
from bench.adapters import body
from bench.adapters import jobd as jobd_adapter
from bench.adapters.workers import Workers
from bench.redis import RedisServer
from jobd.client import Client
from jobd.redis.scripts import SCRIPTS

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = Path(__file__).resolve().parent / ".logs"
WARM_UP = 1000
BATCH = 1000
SLOW_MICROSECONDS = 1000


async def fill(url: str, count: int) -> float:
    """Enqueue `count` no-op jobs in batches; returns the seconds it took."""
    started = time.perf_counter()
    async with Client(url) as jobs:
        for first in range(0, count, BATCH):
            calls = [("noop", (i,), {}) for i in range(first, min(first + BATCH, count))]
            await jobs.enqueue_many(calls)
    return time.perf_counter() - started


def drain_rate(
    server: RedisServer, counter: RedisServer, depth: int, jobs: int, logs: Path
) -> float:
    """Jobs/s of one worker over `jobs` completions, `depth` queued when it started."""
    with server.client() as conn, counter.client() as done:
        conn.flushall()
        done.flushall()
        filled = asyncio.run(fill(server.url, depth))
        print(f"  queued {depth:,} jobs in {filled:.1f} s ({depth / filled:,.0f}/s)")
        conn.config_set("slowlog-log-slower-than", SLOW_MICROSECONDS)
        conn.slowlog_reset()
        config = logs / f"depth-{depth}.toml"
        config.write_text(jobd_adapter.config_text(server.url, 100))
        workers = Workers(
            [sys.executable, "-m", "jobd", "run", "--config", str(config)],
            1,
            logs / f"depth-{depth}.log",
            {"BENCH_COUNTER_URL": counter.url},
        )
        workers.start()
        try:
            start = _wait_count(done, WARM_UP, workers)
            end = _wait_count(done, WARM_UP + jobs, workers)
        finally:
            workers.stop()
        slow = conn.slowlog_get(1024)
    return jobs / (end - start), summarize(slow)


def summarize(entries: list[dict[str, object]]) -> dict[str, tuple[int, float]]:
    """SLOWLOG entries by command (scripts by their jobd name): count and slowest ms."""
    names = {script.sha: f"script {name}" for name, script in SCRIPTS.items()}
    summary: dict[str, tuple[int, float]] = {}
    for entry in entries:
        command = entry["command"]
        words = (
            command.decode(errors="replace") if isinstance(command, bytes) else str(command)
        ).split()
        name = (
            names.get(words[1], words[1])
            if words[0].upper() == "EVALSHA" and len(words) > 1
            else words[0]
        )
        count, slowest = summary.get(name, (0, 0.0))
        summary[name] = (count + 1, max(slowest, float(entry["duration"]) / 1000))  # type: ignore[arg-type]
    return summary


def _wait_count(done: redis.Redis, count: int, workers: Workers) -> float:
    """The monotonic time at which the completion counter reached `count`."""
    while True:
        value = int(done.get(body.DONE_KEY) or 0)
        if value >= count:
            return time.monotonic()
        failure = workers.failure()
        if failure:
            raise SystemExit(failure)
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.depth", description=__doc__)
    parser.add_argument("--deep", type=int, default=1_000_000, help="depth of the deep queue")
    parser.add_argument("--jobs", type=int, default=20_000, help="completions timed per run")
    args = parser.parse_args()
    if args.deep < args.jobs + WARM_UP:
        parser.error("--deep must exceed --jobs by at least 1,000")
    stamp = datetime.now(UTC)
    logs = LOGS / stamp.strftime("depth-%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    with RedisServer() as server, RedisServer() as counter:
        shallow_depth = args.jobs + WARM_UP
        print(f"shallow queue ({shallow_depth:,} jobs):")
        shallow, shallow_slow = drain_rate(server, counter, shallow_depth, args.jobs, logs)
        print(f"  {shallow:,.0f} jobs/s")
        print(f"deep queue ({args.deep:,} jobs):")
        deep, deep_slow = drain_rate(server, counter, args.deep, args.jobs, logs)
        print(f"  {deep:,.0f} jobs/s")
        with server.client() as conn:
            memory = conn.info("memory")["used_memory_human"]
            version = conn.info("server")["redis_version"]
    lines = [
        "# Queue depth: does the drain rate hold with 1,000,000 jobs queued?",
        "",
        f"- Date: {stamp:%Y-%m-%d %H:%M} UTC; {machine.one_line(machine.describe())}; redis-server {version}",
        f"- `python -m bench.depth --deep {args.deep} --jobs {args.jobs}`: one jobd worker "
        f"(concurrency 100), {args.jobs:,} completions timed after the first {WARM_UP:,}",
        "",
        "| queued when the worker starts | jobs/s |",
        "|---|---|",
        f"| {shallow_depth:,} | {shallow:,.0f} |",
        f"| {args.deep:,} | {deep:,.0f} |",
        f"| ratio deep ÷ shallow | {deep / shallow:.2f} |",
        "",
        f"Redis used_memory at the end of the deep run: {memory}.",
        "",
        f"Commands slower than {SLOW_MICROSECONDS / 1000:g} ms (SLOWLOG, up to 1,024 kept per run):",
        "",
        "| command | shallow: count, slowest ms | deep: count, slowest ms |",
        "|---|---|---|",
    ]
    for name in sorted(set(shallow_slow) | set(deep_slow)):
        before = shallow_slow.get(name, (0, 0.0))
        after = deep_slow.get(name, (0, 0.0))
        lines.append(f"| {name} | {before[0]}, {before[1]:.1f} | {after[0]}, {after[1]:.1f} |")
    report = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "depth-latest.md").write_text(report)
    print()
    print(report)


if __name__ == "__main__":
    main()
