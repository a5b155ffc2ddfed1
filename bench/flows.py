"""`python -m bench.flows [--width 10000] [--chain 200]`: what workflows (docs/workflows.md) cost
in single Redis commands and in time, measured on one private redis-server (jobd only).

The issue's requirement: a fan-out of 10,000 children into one fan-in job works without any single
Redis command that takes longer than a few milliseconds (no O(n) work per parent end).

Every step starts on an emptied Redis (bench.redis.RedisServer.reset) with every jobd script
loaded (SCRIPT LOAD: no EVAL compiles a script during a step) and SLOWLOG logging every command
(`slowlog-log-slower-than 0`, `slowlog-max-len` 1,000,000). A step's longest single command is the
largest SLOWLOG duration: the time Redis spent executing it (a script's whole run for EVALSHA), not
the round trip. Redis 7 also logs the commands a script calls (from the client '?:0', just before
the script's entry): they are shown as part of their script. The benchmark's own polling (its
connection named "jobd-bench") is left out. All steps run twice: with every command logged (the
per-command tables), then logging only commands of 1 ms or more (logging every command slows
Redis, and lengthens most the scripts that call many commands).

  S1  store, `client.flow()`: a root, `--width` children each `after=[root]`, and a final job
      `after=` every child, in one flow.lua call (one script storing width + 2 jobs).
  S2  store in chunks: the root alone (`enqueue`), the children by `enqueue_many(..., after=[root])`
      in batches of 500 (a flow.lua call each), then the final job `after=` every child (one
      flow.lua call linking `--width` parents). For reference, one `enqueue_many` of 500 jobs
      without `after` (enqueue.lua) on another queue.
      When a store fails: what the failed call left in Redis, what the same call sent again
      returns, and the widest fan-in that stores (bisected).
  F   fan-out/fan-in run: one worker (`python -m jobd run`, concurrency 100, no-op jobs) runs the
      graph until the final job succeeded and its queue's `settled` set is empty (every ended job
      settled by the resolver). The final job returns `len(await
      jobd.current_job().parent_results())`. The graph is S1's when S1 stored; else S2's; and when
      neither could store a fan-in of `--width` parents, S2's shape with the fan-in split: the
      children in slices of 5,000 under "gather" jobs (each returning its parent_results count)
      and the final job after the gathers (returning their sum).
  C   chain: `--chain` no-op jobs (200), each after the previous one, stored by one flow; the time
      from one job's end (`finished_at`) to the next one's start (`started_at`), both the Redis
      clock in ms, and the whole chain from the first start to the last end.

Prints the report and writes bench/results/flows-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_py
import redis.asyncio

from bench import limits, machine
from bench.events import cpu_seconds, redis_cpu
from bench.limits import Worker, drain, percentile, publish, rate, run_benchmark
from bench.redis import RedisServer
from jobd.client import Client, Job
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import SCRIPTS

RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = "fl"
BATCH = 500
"""Children per enqueue_many in S2."""
SPLIT = 5000
"""Parents per gather job when a fan-in of --width parents cannot be stored."""
REFERENCE = "reference"
"""The queue of S2's reference batch (jobs without `after`)."""
FINAL = "final"
"""The final job's id (given, so that what a failed store left of it can be looked up)."""
SLOWLOG_LEN = 1_000_000
BENCH_NAME = "jobd-bench"
"""The client name of the benchmark's polling connection, whose commands are left out."""
POLL = 0.02
GUARD = 300.0
"""Seconds a run may take before the benchmark gives up."""
TOP = 5
LIGHT = 1000
"""The second pass's slowlog-log-slower-than, µs."""
BY_SHA = {script.sha: name for name, script in SCRIPTS.items()}

JOBS = """
import jobd


async def noop() -> None:
    pass


async def fanin() -> int:
    return len(await jobd.current_job().parent_results())


async def fanin_sum() -> int:
    return sum((await jobd.current_job().parent_results()).values())
"""
"""The job functions, a module beside bench.limits' own (in its JOBS_DIR, which its Worker puts on
the worker's PYTHONPATH)."""
JOBS_MODULE = "flows_bench_jobs"
(limits.JOBS_DIR / f"{JOBS_MODULE}.py").write_text(JOBS)


def config(url: str, prefix: str, *, concurrency: int = 100) -> str:
    functions = "".join(
        f'[functions.{name}]\npath = "{JOBS_MODULE}:{name}"\n\n'
        for name in ("noop", "fanin", "fanin_sum")
    )
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{prefix}"\n\n'
        f"[worker]\nconcurrency = {concurrency}\n\n"
        '[http]\nlisten = "127.0.0.1:0"\n\n'
        f"{functions}"
    )


# -- SLOWLOG -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One command SLOWLOG recorded (the commands a script called are part of the script's)."""

    id: int
    us: int
    label: str
    """The command's name, or the script's for EVALSHA ('resolve.lua')."""
    args: str
    """The start of its arguments (SLOWLOG keeps 32 of them, 128 bytes each)."""
    calls: tuple[tuple[str, int], ...] = ()
    """For a script: the Redis commands it called and their µs, as SLOWLOG logged them (from the
    script's client, address '?:0', just before the script). The rest of the script's time is Lua
    itself (with the garbage collector Redis steps every 50 scripts, and SLOWLOG's own logging of
    those commands) or redis-server being descheduled."""

    def row(self) -> dict[str, Any]:
        top = max(self.calls, key=lambda call: call[1], default=None)
        return {
            "us": self.us,
            "command": self.label,
            "args": self.args,
            "called_us": sum(us for _, us in self.calls),
            "called": len(self.calls),
            "called_max": f"{top[0]} {top[1]:,} µs" if top else "",
        }


def text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def clip(value: str, size: int = 48) -> str:
    return value if len(value) <= size else value[: size - 3] + "..."


def entry(raw: list[Any], inner: Sequence[list[Any]]) -> Entry:
    argv = [text(arg) for arg in raw[3]]
    name = argv[0].upper()
    if name == "EVALSHA" and len(argv) > 2:
        label = f"{BY_SHA.get(argv[1], argv[1][:8])}.lua"
        shown = [f"{argv[2]} keys"] + [clip(arg) for arg in argv[3:6]]
    else:
        label = name
        shown = [clip(arg) for arg in argv[1:4]]
    more = len(argv) - 1 - len(shown)
    if more > 0:
        shown.append(f"+{more} args")
    calls = tuple((text(item[3][0]).upper(), int(item[2])) for item in inner)
    return Entry(int(raw[0]), int(raw[2]), label, " ".join(shown), calls)


class Slowlog:
    """SLOWLOG of the benchmark's redis-server, logging commands of `threshold` µs or more."""

    def __init__(self, server: RedisServer, threshold: int) -> None:
        self.server = server
        self.threshold = threshold
        self.connection = server.client()

    def fresh(self) -> None:
        """An empty Redis with every jobd script loaded; the log emptied."""
        self.server.reset()
        for script in SCRIPTS.values():
            self.connection.script_load(script.source)
        self.watch()

    def watch(self) -> None:
        """From now on, log (and hold) the commands of `threshold` µs or more."""
        self.connection.config_set("slowlog-log-slower-than", self.threshold)
        self.connection.config_set("slowlog-max-len", SLOWLOG_LEN)
        self.connection.slowlog_reset()

    def read(self) -> list[Entry]:
        """The commands logged since `watch`, oldest first, less the benchmark's polling and
        reads; the commands scripts called are in their script's entry, not on their own."""
        raw = self.connection.execute_command("SLOWLOG", "GET", "-1")
        if len(raw) >= SLOWLOG_LEN:
            raise SystemExit(f"SLOWLOG is full ({len(raw):,} entries): raise SLOWLOG_LEN")
        entries = []
        inner: list[list[Any]] = []
        for item in sorted(raw, key=lambda found: int(found[0])):
            if text(item[4]) == "?:0":  # called by the script logged next
                inner.append(item)
                continue
            name = text(item[3][0]).upper()
            if text(item[5]) != BENCH_NAME and name not in ("SLOWLOG", "CONFIG"):
                entries.append(entry(item, inner))
            inner = []
        return entries

    def close(self) -> None:
        self.connection.close()


def longest(entries: Sequence[Entry], count: int = TOP) -> list[dict[str, Any]]:
    return [found.row() for found in sorted(entries, key=lambda e: e.us, reverse=True)[:count]]


def aggregate(groups: dict[str, list[int]]) -> list[dict[str, Any]]:
    return [
        {
            "command": label,
            "calls": len(us),
            "total_ms": sum(us) / 1000,
            "mean_us": statistics.fmean(us),
            "p99_us": percentile(us, 0.99),
            "max_us": max(us),
        }
        for label, us in groups.items()
    ]


def by_command(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Per command (or script): calls, total ms, mean, p99 and max µs; longest max first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for found in entries:
        groups[found.label].append(found.us)
    return sorted(aggregate(groups), key=lambda row: row["max_us"], reverse=True)


def by_call(entries: Sequence[Entry], count: int = 10) -> list[dict[str, Any]]:
    """The commands scripts called, per script and command: most total time first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for found in entries:
        for name, us in found.calls:
            groups[f"{found.label}: {name}"].append(us)
    return sorted(aggregate(groups), key=lambda row: row["total_ms"], reverse=True)[:count]


def longest_call(entries: Sequence[Entry]) -> dict[str, Any] | None:
    """The longest single command a script called."""
    found = max(
        ((us, name, script.label) for script in entries for name, us in script.calls),
        default=None,
    )
    return {"us": found[0], "command": found[1], "script": found[2]} if found else None


def over(entries: Sequence[Entry], us: int) -> int:
    return sum(1 for found in entries if found.us >= us)


# -- what a failed store left ----------------------------------------------------------------------


async def leftovers(client: Client, children: Sequence[str]) -> dict[str, Any]:
    """Jobs, queue indexes and links in Redis after a failed store (which should leave none of
    the call's writes)."""
    keys = QueueKeys(PREFIX, "default")
    connection = client.redis
    hashes = 0
    async for _ in connection.scan_iter(match=keys.job("*"), count=1000):
        hashes += 1
    edge = f"default {FINAL}"
    async with connection.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.queued)
        pipe.zcard(keys.waiting)
        pipe.hget(keys.job(FINAL), "status")
        pipe.exists(keys.waits(FINAL))
        for child in children:
            pipe.sismember(keys.dependants(child), edge)
        replies = await pipe.execute()
    queued, waiting, status, waits = replies[:4]
    return {
        "job_hashes": hashes,
        "queued": queued,
        "waiting": waiting,
        "final_status": text(status) if status else None,
        "final_waits_set": bool(waits),
        "children_linked_to_final": sum(1 for linked in replies[4:] if linked),
        "children": len(children),
    }


# -- S1, S2: storing the graph ----------------------------------------------------------------------


@dataclass
class Graph:
    root: Job
    children: list[Job]
    gathers: list[Job]
    final: Job
    how: str

    @property
    def jobs(self) -> list[Job]:
        return [self.root, *self.children, *self.gathers, self.final]


async def store_flow(
    log: Slowlog, client: Client, width: int
) -> tuple[dict[str, Any], Graph | None]:
    log.fresh()
    began = time.perf_counter()
    error = None
    try:
        async with client.flow() as flow:
            root = flow.enqueue("noop")
            children = [flow.enqueue("noop", after=[root]) for _ in range(width)]
            final = flow.enqueue("fanin", job_id=FINAL, after=children)
    except redis_py.ResponseError as failure:
        error = str(failure)
    wall = time.perf_counter() - began
    entries = log.read()
    result: dict[str, Any] = {
        "ok": error is None,
        "error": error,
        "jobs": width + 2,
        "wall_s": wall,
        "flow_us": [found.us for found in entries if found.label == "flow.lua"],
        "longest": longest(entries),
    }
    if error is not None:
        result["left"] = await leftovers(client, [child.id for child in children])
        return result, None
    return result, Graph(root, children, [], final, f"S1's: one flow of {width + 2:,} jobs")


async def fan_out(client: Client, width: int) -> tuple[Job, list[Job]]:
    """S2's root and children."""
    root = await client.enqueue("noop")
    children: list[Job] = []
    for start in range(0, width, BATCH):
        count = min(BATCH, width - start)
        children += await client.enqueue_many([("noop", (), {})] * count, after=[root])
    return root, children


async def widest(client: Client, children: Sequence[Job]) -> int:
    """The most parents a job can be enqueued after (bisected; the failed calls leave their
    writes, in a Redis that is emptied afterwards)."""
    stores, fails = 0, len(children)
    while fails - stores > 1:
        middle = (stores + fails) // 2
        try:
            await client.enqueue("noop", after=children[:middle])
            stores = middle
        except redis_py.ResponseError:
            fails = middle
    return stores


async def store_chunked(
    log: Slowlog, client: Client, width: int, probe: bool
) -> tuple[dict[str, Any], Graph | None]:
    log.fresh()
    await client.enqueue_many([("noop", (), {})] * BATCH, queue=REFERENCE)
    reference = [found.us for found in log.read() if found.label == "enqueue.lua"]
    log.watch()
    began = time.perf_counter()
    root, children = await fan_out(client, width)
    batches = time.perf_counter() - began
    chunks = log.read()
    log.watch()
    began = time.perf_counter()
    error = None
    try:
        final = await client.enqueue("fanin", job_id=FINAL, after=children)
    except redis_py.ResponseError as failure:
        error = str(failure)
    fanin_wall = time.perf_counter() - began
    fanin = log.read()
    result: dict[str, Any] = {
        "ok": error is None,
        "error": error,
        "reference_us": reference,
        "batches": -(-width // BATCH),
        "batches_wall_s": batches,
        "batch_flow_us": [found.us for found in chunks if found.label == "flow.lua"],
        "root_us": [found.us for found in chunks if found.label == "enqueue.lua"],
        "fanin_wall_s": fanin_wall,
        "fanin_flow_us": [found.us for found in fanin if found.label == "flow.lua"],
        "longest": longest([*chunks, *fanin]),
    }
    if error is None:
        return result, Graph(root, children, [], final, "S2's, built in chunks")
    result["left"] = await leftovers(client, [child.id for child in children])
    # the same call again, as a caller (or a retry) would send it
    again = await client.enqueue("fanin", job_id=FINAL, after=children)
    result["again"] = {"created": again.created, "status": str(await again.status())}
    if probe:
        result["widest"] = await widest(client, children)
    return result, None


async def split_graph(client: Client, width: int) -> Graph:
    """S2's graph with the fan-in split under gather jobs (see F)."""
    root, children = await fan_out(client, width)
    gathers = [
        await client.enqueue("fanin", after=children[start : start + SPLIT])
        for start in range(0, width, SPLIT)
    ]
    final = await client.enqueue("fanin_sum", job_id=FINAL, after=gathers)
    how = (
        f"S2's chunks with the fan-in split: {len(gathers)} gather jobs after <= {SPLIT:,} "
        "children each (each returns its parent_results' count), the final job after the "
        "gathers (returns their sum)"
    )
    return Graph(root, children, gathers, final, how)


# -- running a graph ---------------------------------------------------------------------------------


def preempted(pid: int) -> int:
    """How often the process was descheduled against its will so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


async def run(log: Slowlog, last: Job) -> dict[str, Any]:
    """Start a worker, wait until `last` succeeded and its queue's settled set is empty; the
    commands logged meanwhile, what the polling saw, and the CPU Redis and the worker used."""
    server = log.server
    assert server.proc is not None
    keys = QueueKeys(PREFIX, last.queue)
    poller = redis.asyncio.Redis.from_url(server.url, client_name=BENCH_NAME)
    log.watch()
    switches, cpu = preempted(server.proc.pid), redis_cpu(log.connection)
    worker = Worker(config(server.url, PREFIX))
    began = time.perf_counter()
    peak = 0
    try:
        deadline = began + GUARD
        ended = None
        while True:
            if worker.process.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.process.returncode}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"job {last.id} did not end within {GUARD:g}s")
            async with poller.pipeline(transaction=False) as pipe:
                pipe.hget(keys.job(last.id), "status")
                pipe.zcard(keys.settled)
                status, settled = await pipe.execute()
            peak = max(peak, settled)
            if status in (b"failed", b"aborted"):
                raise SystemExit(f"job {last.id} {text(status)}")
            if status == b"succeeded" and ended is None:
                ended = time.perf_counter()
            if ended is not None and settled == 0:
                break
            await asyncio.sleep(POLL)
        settled_at = time.perf_counter()
        switches = preempted(server.proc.pid) - switches
        cpu = redis_cpu(log.connection) - cpu
        worker_cpu = cpu_seconds(worker.process.pid)
        entries = log.read()
    finally:
        worker.stop()
        await poller.aclose()
    return {
        "wall_s": settled_at - began,
        "settle_tail_s": settled_at - ended,
        "settled_peak": peak,
        "redis_cpu_s": cpu,
        "redis_preempted": switches,
        "worker_cpu_s": worker_cpu,
        "commands": len(entries),
        "over_1ms": over(entries, 1000),
        "over_5ms": over(entries, 5000),
        "longest": longest(entries),
        "by_command": by_command(entries),
        "by_call": by_call(entries),
        "longest_call": longest_call(entries),
    }


async def fields(client: Client, jobs: Sequence[Job], *names: str) -> list[list[int]]:
    async with client.redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hmget(QueueKeys(PREFIX, job.queue).job(job.id), *names)
        rows = await pipe.execute()
    return [[int(value) for value in row] for row in rows]


async def ttls(client: Client, jobs: Sequence[Job]) -> dict[str, int]:
    """The jobs' records after a run: with a TTL, without one (kept for good), gone."""
    async with client.redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.pttl(QueueKeys(PREFIX, job.queue).job(job.id))
        replies = await pipe.execute()
    return {
        "with_ttl": sum(1 for ttl in replies if ttl >= 0),
        "without_ttl": sum(1 for ttl in replies if ttl == -1),
        "gone": sum(1 for ttl in replies if ttl == -2),
    }


async def fan(log: Slowlog, client: Client, width: int, graph: Graph) -> dict[str, Any]:
    """F: run the graph Redis holds."""
    ran = await run(log, graph.final)
    times = await fields(client, graph.jobs, "started_at", "finished_at")
    root, children = times[0], times[1 : 1 + width]
    gathers, final = times[1 + width : -1], times[-1]
    total_ms = final[1] - root[0]
    last_child_end = max(end for _, end in children)
    child_starts = [start for start, _ in children]
    return {
        "how": graph.how,
        "jobs": len(graph.jobs),
        "result": await graph.final.result(timeout=10),
        "root_start_to_final_end_ms": total_ms,
        "jobs_per_s": len(graph.jobs) / (total_ms / 1000),
        "children_start_rate": rate(child_starts),
        "root_end_to_first_child_start_ms": min(child_starts) - root[1],
        "root_end_to_last_child_start_ms": max(child_starts) - root[1],
        "last_child_end_to_gather_start_ms": [start - last_child_end for start, _ in gathers],
        "gather_run_ms": [end - start for start, end in gathers],
        "last_parent_end_to_final_start_ms": final[0] - max(end for _, end in gathers or children),
        "final_run_ms": final[1] - final[0],
        "records": await ttls(client, graph.jobs),
        **ran,
    }


async def chain(log: Slowlog, client: Client, length: int) -> dict[str, Any]:
    """C: a chain of `length` no-op jobs, stored by one flow, run by one worker."""
    log.fresh()
    jobs: list[Job] = []
    async with client.flow() as flow:
        for _ in range(length):
            jobs.append(flow.enqueue("noop", after=jobs[-1:] or None))
    stored = [found.us for found in log.read() if found.label == "flow.lua"]
    ran = await run(log, jobs[-1])
    times = await fields(client, jobs, "started_at", "finished_at")
    gaps = [float(nxt[0] - prev[1]) for prev, nxt in itertools.pairwise(times)]
    return {
        "length": length,
        "flow_us": stored,
        "gap_p50_ms": statistics.median(gaps),
        "gap_p99_ms": percentile(gaps, 0.99),
        "gap_max_ms": max(gaps),
        "gap_min_ms": min(gaps),
        "chain_ms": times[-1][1] - times[0][0],
        "records": await ttls(client, jobs),
        **ran,
    }


async def measure(
    server: RedisServer, client: Client, args: argparse.Namespace, threshold: int
) -> dict[str, Any]:
    """S2, S1, F and C, with SLOWLOG logging the commands of `threshold` µs or more."""
    log = Slowlog(server, threshold)
    first = threshold == 0
    try:
        result: dict[str, Any] = {"threshold_us": threshold}
        print(f"[slowlog-log-slower-than {threshold}] D: reference drain ...", flush=True)
        log.fresh()
        times, _ = await drain(server.url, "ref", config(server.url, "ref"), "noop", args.width)
        result["drain_jobs_per_s"] = rate([started for _, started in times])
        print(f"[slowlog-log-slower-than {threshold}] S2: store in chunks ...", flush=True)
        result["chunked"], graph = await store_chunked(log, client, args.width, probe=first)
        print(f"[slowlog-log-slower-than {threshold}] S1: store by one flow ...", flush=True)
        result["flow"], flowed = await store_flow(log, client, args.width)
        if flowed is not None:
            graph = flowed  # Redis holds S1's graph
        else:  # Redis holds what S1 left: build S2's graph again, or the split one
            log.fresh()
            if graph is not None:
                root, children = await fan_out(client, args.width)
                final = await client.enqueue("fanin", job_id=FINAL, after=children)
                graph = Graph(root, children, [], final, graph.how)
            else:
                graph = await split_graph(client, args.width)
        print(f"[slowlog-log-slower-than {threshold}] F: run ...", flush=True)
        result["fan"] = await fan(log, client, args.width, graph)
        print(f"[slowlog-log-slower-than {threshold}] C: chain ...", flush=True)
        result["chain"] = await chain(log, client, args.chain)
    finally:
        log.close()
    return result


# -- the report ------------------------------------------------------------------------------------


def ms(us: float) -> str:
    return f"{us / 1000:,.2f} ms"


def top_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| # | duration | command | of it in the commands it called (longest) | arguments |",
        "|---|---|---|---|---|",
    ]
    for rank, row in enumerate(rows, 1):
        args = row["args"].replace("|", "\\|")
        called = (
            f"{ms(row['called_us'])} in {row['called']:,} ({row['called_max']})"
            if row["called"]
            else ""
        )
        lines.append(f"| {rank} | {ms(row['us'])} | {row['command']} | {called} | `{args}` |")
    if not rows:
        lines.append("| | none logged | | | |")
    return lines


def command_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| command | calls | total | mean | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['command']} | {row['calls']:,} | {row['total_ms']:,.1f} ms | "
            f"{row['mean_us']:,.1f} µs | {row['p99_us']:,} µs | {ms(row['max_us'])} |"
        )
    return lines


def stats(values: Sequence[int]) -> str:
    if not values:
        return "not logged"
    if len(values) == 1:
        return ms(values[0])
    return f"max {ms(max(values))}, median {ms(statistics.median(values))}, total {ms(sum(values))}"


def call_row(step: dict[str, Any]) -> str:
    call = step["longest_call"]
    if call is None:
        return "| the longest single command a script called | none logged |"
    return (
        f"| the longest single command a script called | {call['command']} in "
        f"{call['script']}, {ms(call['us'])} |"
    )


def cpu_row(step: dict[str, Any]) -> str:
    return (
        f"| worker start to the end of the run | {step['wall_s']:.2f} s; CPU: worker "
        f"{step['worker_cpu_s']:.2f} s, Redis {step['redis_cpu_s']:.2f} s; redis-server "
        f"descheduled against its will {step['redis_preempted']:,} times |"
    )


def stored(step: dict[str, Any]) -> str:
    return "stored" if step["ok"] else f"**failed**: `{step['error']}`"


def left_line(left: dict[str, Any]) -> str:
    return (
        f"{left['job_hashes']:,} job hashes, {left['queued']:,} queued, {left['waiting']:,} "
        f"waiting; the final job's hash: status {left['final_status']!r}, waits set "
        f"{'present' if left['final_waits_set'] else 'absent'}; "
        f"{left['children_linked_to_final']:,} of {left['children']:,} children list it "
        "as a dependant"
    )


def storing(width: int, s1: dict[str, Any], s2: dict[str, Any]) -> list[str]:
    lines = [
        "| step | outcome | Redis time (SLOWLOG) |",
        "|---|---|---|",
        f"| S1: `client.flow()`, root + {width:,} children + final after all children, one "
        f"flow.lua call of {s1['jobs']:,} jobs | {stored(s1)} ({s1['wall_s']:.2f} s wall) | "
        f"flow.lua: {stats(s1['flow_us'])} |",
        f"| reference: `enqueue_many` of {BATCH} jobs without `after` (another queue) | "
        f"stored | enqueue.lua: {stats(s2['reference_us'])} |",
        f"| S2a: root by `enqueue`, then {width:,} children by `enqueue_many(after=[root])` in "
        f"{s2['batches']} batches of {BATCH} | stored ({s2['batches_wall_s']:.2f} s wall) | "
        f"enqueue.lua {stats(s2['root_us'])}; flow.lua per batch: {stats(s2['batch_flow_us'])} |",
        f"| S2b: final job `enqueue(after=children)`: one flow.lua call linking {width:,} "
        f"parents | {stored(s2)} ({s2['fanin_wall_s']:.2f} s wall) | "
        f"flow.lua: {stats(s2['fanin_flow_us'])} |",
    ]
    for name, step in (("S1", s1), ("S2b", s2)):
        if "left" in step:
            lines += ["", f"What the failed {name} call left in Redis: {left_line(step['left'])}."]
    if "again" in s2:
        lines += [
            "",
            f"Sending S2b's call again (same job id) returns created={s2['again']['created']}, "
            f"status {s2['again']['status']!r}.",
        ]
    if "widest" in s2:
        lines += [
            "",
            f"The widest fan-in that stores (bisected with `enqueue(after=children[:n])`): "
            f"{s2['widest']:,} parents.",
        ]
    return lines


def fan_rows(run_: dict[str, Any], width: int, drain_rate: float) -> list[str]:
    gathers = run_["last_child_end_to_gather_start_ms"]
    lines = [
        f"| root's start to the final job's end | {run_['root_start_to_final_end_ms']:,} ms "
        f"({run_['jobs_per_s']:,.0f} jobs/s) |",
        f"| the children's starts, first to last | {run_['children_start_rate']:,.0f} jobs/s "
        f"(reference: {drain_rate:,.0f} jobs/s for {width:,} no-op jobs without `after`, "
        "queued before the worker started; both from the jobs' `started_at`) |",
        f"| root's end to the first / last child's start | "
        f"{run_['root_end_to_first_child_start_ms']:,} ms / "
        f"{run_['root_end_to_last_child_start_ms']:,} ms |",
    ]
    if gathers:
        lines += [
            "| last child's end to each gather's start | "
            + ", ".join(f"{gap:,} ms" for gap in gathers)
            + " |",
            "| each gather's run (reads its parents' results) | "
            + ", ".join(f"{took:,} ms" for took in run_["gather_run_ms"])
            + " |",
        ]
    lines += [
        f"| last parent's end to the final job's start | "
        f"{run_['last_parent_end_to_final_start_ms']:,} ms |",
        f"| the final job's run (reads its parents' results) | {run_['final_run_ms']:,} ms |",
        "| the final job's result (`len(parent_results())`"
        + (", summed over the gathers" if gathers else "")
        + f") | {run_['result']:,} (expected {width:,}) |",
        f"| final job's end seen to the settled list empty | "
        f"{run_['settle_tail_s'] * 1000:,.0f} ms |",
        f"| longest `settled` list seen (polled every {POLL * 1000:.0f} ms) | "
        f"{run_['settled_peak']:,} |",
        f"| job records after the run | {run_['records']['with_ttl']:,} with a TTL, "
        f"{run_['records']['without_ttl']:,} without, {run_['records']['gone']:,} gone |",
        f"| commands logged during the run | {run_['commands']:,}; >= 1 ms: "
        f"{run_['over_1ms']:,}; >= 5 ms: {run_['over_5ms']:,} |",
        call_row(run_),
        cpu_row(run_),
    ]
    return lines


def chain_rows(ch: dict[str, Any]) -> list[str]:
    return [
        f"| stored by one flow.lua call | {stats(ch['flow_us'])} |",
        f"| one job's end to the next one's start | p50 {ch['gap_p50_ms']:.1f} ms, p99 "
        f"{ch['gap_p99_ms']:.1f} ms, max {ch['gap_max_ms']:.1f} ms, min {ch['gap_min_ms']:.1f} "
        "ms (Redis clock, ms resolution) |",
        f"| the chain, first start to last end | {ch['chain_ms']:,} ms "
        f"({ch['chain_ms'] / ch['length']:.1f} ms per job) |",
        f"| job records after the run | {ch['records']['with_ttl']:,} with a TTL, "
        f"{ch['records']['without_ttl']:,} without, {ch['records']['gone']:,} gone |",
        f"| commands logged during the run | {ch['commands']:,}; >= 1 ms: {ch['over_1ms']:,}; "
        f">= 5 ms: {ch['over_5ms']:,} |",
        call_row(ch),
        cpu_row(ch),
    ]


def render(result: dict[str, Any]) -> str:
    width = result["args"]["width"]
    full, light = result["passes"]
    s1, s2, run_, ch = full["flow"], full["chunked"], full["fan"], full["chain"]
    lines = [
        f"# Workflows benchmark, {result['date']}",
        "",
        f"`{result['command']}`",
        "",
        f"- Machine: {machine.one_line(result['machine'])}; redis-server {result['redis']}; "
        f"load average (1 min) {result['load'][0]:.2f} at the start, {result['load'][1]:.2f} at "
        "the end (other processes share the machine)",
        f"- jobd commit {result['machine']['jobd_commit']}; one worker `python -m jobd run`, "
        "concurrency 100, in a process of its own",
        "- Durations are SLOWLOG's: Redis's time executing one command, a script's whole run "
        "for EVALSHA (with the commands it called); scripts preloaded, the benchmark's polling "
        "left out. Everything below is measured twice: first with every command logged "
        "(`slowlog-log-slower-than 0`: the per-command figures), then with only commands of "
        f"1 ms or more logged ({light['threshold_us']} µs: logging every command, the commands "
        "scripts call included, slows Redis and lengthens the scripts that call many)",
        "",
        "## Storing the graph (every command logged)",
        "",
        *storing(width, s1, s2),
        "",
        "Longest commands of S1:",
        "",
        *top_table(s1["longest"]),
        "",
        "Longest commands of S2 (a and b):",
        "",
        *top_table(s2["longest"]),
        "",
        "## F: running the fan-out/fan-in (every command logged)",
        "",
        f"Graph: {run_['how']}; {run_['jobs']:,} jobs.",
        "",
        "| figure | value |",
        "|---|---|",
        *fan_rows(run_, width, full["drain_jobs_per_s"]),
        "",
        "Longest commands of the run:",
        "",
        *top_table(run_["longest"]),
        "",
        "Per command during the run (scripts with the commands they called):",
        "",
        *command_table(run_["by_command"]),
        "",
        "The commands the scripts called, most total time first:",
        "",
        *command_table(run_["by_call"]),
        "",
        f"## C: a chain of {ch['length']} no-op jobs (every command logged)",
        "",
        "| figure | value |",
        "|---|---|",
        *chain_rows(ch),
        "",
        "Longest commands of the chain's run:",
        "",
        *top_table(ch["longest"]),
        "",
        f"## Again, logging only commands of {light['threshold_us'] / 1000:g} ms or more",
        "",
        *storing(width, light["flow"], light["chunked"]),
        "",
        f"F (graph: {light['fan']['how']}):",
        "",
        "| figure | value |",
        "|---|---|",
        *fan_rows(light["fan"], width, light["drain_jobs_per_s"]),
        "",
        "Longest commands of F's run:",
        "",
        *top_table(light["fan"]["longest"]),
        "",
        f"C, {light['chain']['length']} jobs:",
        "",
        "| figure | value |",
        "|---|---|",
        *chain_rows(light["chain"]),
        "",
        "Longest commands of C's run:",
        "",
        *top_table(light["chain"]["longest"]),
    ]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": " ".join(["python -m bench.flows", *sys.argv[1:]]),
        "machine": machine.describe(),
        "args": vars(args),
        "passes": [],
        "load": [os.getloadavg()[0]],
    }
    with RedisServer() as server:
        result["redis"] = server.version()
        async with Client(server.url, key_prefix=PREFIX) as client:
            for threshold in (0, LIGHT):
                result["passes"].append(await measure(server, client, args, threshold))
    result["load"].append(os.getloadavg()[0])
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flows", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--width", type=int, default=10_000,
                        help="children of the fan-out and parents of the fan-in (default 10000)")  # fmt: skip
    parser.add_argument("--chain", type=int, default=200,
                        help="jobs in the chain (default 200)")  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    outcome = run_benchmark(main(parse_args()))
    publish("flows", render(outcome), outcome)
