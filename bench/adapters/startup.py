"""`python -m bench.adapters.startup PEER --redis URL --counter URL [--probe FILE]`: one startup
measurement of one library, run with that library's interpreter (bench.startup calls it).

One `stamp` job is queued first (untimed; with `--queued N`, N - 1 no-op jobs behind it), then one
worker process is spawned through the library's own CLI, as in the drain steps; the job records
`time.time()` as its first statement (bench.adapters.body.stamp) on the benchmark's own
redis-server. The result is that moment less `time.time()` taken right before the spawn: both
clocks are this machine's wall clock, read by two processes on one host. Also the CPU time the
worker's process tree has used when the stamp arrived (a few milliseconds after the job
started), which a busy machine disturbs less than the wall time. Prints one line
`BENCH-RESULT {"seconds": ..., "cpu_seconds": ...}` (or `{"na": ...}`).

With `--probe FILE` (jobd only) the worker runs under bench.startup_probe, which appends the
moments of its startup phases to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import redis.asyncio

from bench.adapters import body
from bench.adapters.common import RESULT_PREFIX
from bench.adapters.peer import Options, Peer
from bench.adapters.procs import tree
from bench.adapters.workers import Workers

WAIT_SECONDS = 30.0
"""Longest wait for the job to start."""


def load_peer(name: str) -> Peer:
    """The adapter's Peer subclass (bench.adapters.<name>)."""
    module = importlib.import_module(f"bench.adapters.{name}")
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, Peer) and value.name == name:
            return value()
    raise SystemExit(f"bench.adapters.{name} has no Peer named {name!r}")


def cpu_seconds(pid: int) -> float:
    """CPU time the process tree of `pid` has used so far (/proc/PID/schedstat, nanoseconds): on a
    shared machine it varies far less than the wall time."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
            total += int(Path(f"/proc/{member}/schedstat").read_text().split()[0])
    return total / 1e9


def worker_command(peer: Peer, options: Options, probe: Path | None) -> list[str]:
    command = peer.worker_command(options)
    if probe is None:
        return command
    if command[1:3] != ["-m", "jobd"]:
        raise SystemExit("--probe works with jobd's worker only")
    return [command[0], "-m", "bench.startup_probe", str(probe), *command[3:]]


async def measure(
    peer: Peer, options: Options, probe: Path | None, importtime: bool
) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(options.redis_url, lib_name=None, lib_version=None)
    counter = redis.asyncio.Redis.from_url(options.counter_url, lib_name=None, lib_version=None)
    await client.flushall()
    await counter.flushall()
    await peer.open(options.redis_url)
    await peer.enqueue("stamp", 0)
    if options.jobs > 1:  # a backlog behind it, as in a drain: the first claim takes a full batch
        await peer.prepare("noop", options.jobs - 1, 1000)
    await peer.close()
    env = {
        "BENCH_REDIS_URL": options.redis_url,
        "BENCH_COUNTER_URL": options.counter_url,
        "BENCH_CONCURRENCY": str(options.concurrency),
        **({"PYTHONPROFILEIMPORTTIME": "1"} if importtime else {}),
    }
    log = options.logdir / f"{peer.name}-{options.tag}.log"
    workers = Workers(worker_command(peer, options, probe), 1, log, env)
    spawned = time.time()
    workers.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            reply = await counter.blpop([body.STARTS_KEY], timeout=0.2)
            if reply is not None:
                started = float(reply[1].split()[1])
                cpu = cpu_seconds(workers.procs[0].pid)
                break
            if failure := workers.failure():
                return {"na": failure}
            if time.monotonic() > deadline:
                return {"na": f"the job did not start within {WAIT_SECONDS:g} s; see {log}"}
    finally:
        workers.stop()
        await client.aclose()
        await counter.aclose()
    return {"seconds": started - spawned, "cpu_seconds": cpu, "spawned": spawned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--logdir", type=Path, default=Path("."))
    parser.add_argument("--tag", default="startup")
    parser.add_argument("--probe", type=Path, help="jobd: record the phases into this file")
    parser.add_argument("--queued", type=int, default=1,
                        help="jobs queued before the spawn: the stamp job, then no-op jobs")  # fmt: skip
    parser.add_argument("--importtime", action="store_true",
                        help="run the worker with -X importtime (its stderr goes to its log)")  # fmt: skip
    args = parser.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.redis
    os.environ["BENCH_COUNTER_URL"] = args.counter
    options = Options(
        step="startup", redis_url=args.redis, counter_url=args.counter, jobs=args.queued,
        concurrency=100,
        workers=1, function="stamp", rate=0.0, batch=1, logdir=args.logdir, tag=args.tag,
    )  # fmt: skip
    try:
        result = asyncio.run(measure(load_peer(args.peer), options, args.probe, args.importtime))
    except Exception as error:  # noqa: BLE001 - reported to the orchestrator as n/a
        traceback.print_exc()
        result = {"na": f"error: {type(error).__name__}: {error}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
