"""`python -m bench [--quick] [--only jobd,arq] [--workloads W2,W7] [--reps 3] [--jobs 20000]
[--body-redis own|queue]`: jobd against its peers.

Starts two private redis-servers (the libraries' one, and the benchmark's own for the completion
counter and start times), builds or reuses one venv per peer under bench/.venvs/, runs every
library on the same workloads interleaved (W1 … W6 for each library, then again), and writes
bench/results/latest.{md,json} plus a timestamped copy (quick runs: quick-latest.{md,json}; a run
of some `--workloads` only: latest-w7-w7l.{md,json} and the like).
Workers' output and the drivers' stderr go to bench/.logs/<timestamp>/.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, plan, report, venvs
from bench.redis import RedisServer
from bench.runner import run_step

LOGS = Path(__file__).resolve().parent / ".logs"

COMMON_KNOBS = (
    "hiredis is installed for every library (jobd's environment has it); each worker logs at its "
    "CLI's default level into a file; every job body does one INCR (W3: one RPUSH) on the "
    "benchmark's own redis-server; W3's enqueue time is taken just before the enqueue call; "
    "W7's job awaits asyncio.sleep(1) (Dramatiq: time.sleep(1)) as a stand-in for a slow API "
    "call, then INCRs through a pool of at most 64 connections"
)
KNOBS = {
    "jobd": "`worker.concurrency = 100` (its default; W7: 2,000) and `http.listen = "
    "127.0.0.1:0` (a free port for /metrics); `python -m jobd run` (W6: one such command with "
    "`--processes N`); W7L adds "
    '`[limits.llm] rate = "1000/s"` to its function',
    "arq": "`max_jobs = 100` (default 10; W7: 2,000); `arq` CLI; poll_delay 0.5 s and "
    "queue_read_limit max(5 x max_jobs, 100) are its defaults",
    "saq": "`concurrency = 100` (default 10; W7: 2,000); `saq` CLI, 1 process (its default)",
    "taskiq": "`taskiq worker --workers 1` (default 2 processes) `--max-async-tasks 100` (its "
    "default; W7: 2,000); RedisStreamBroker + RedisAsyncResultBackend as taskiq-redis's README "
    "sets up",
    "dramatiq": "`dramatiq --processes 1 --threads 100` (default 2 processes x 8 threads; W7: "
    "2,000 threads): concurrency is threads in Dramatiq; plain (sync) actors, the 10 ms and 1 s "
    "jobs are `time.sleep`; RedisBroker, default middleware, no result backend (its default); "
    "its enqueue, `actor.send()`, is a synchronous call (W1c: from 200 threads)",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 jobs, 1 repetition, smaller W3 and W5")  # fmt: skip
    parser.add_argument("--only", default=",".join(plan.PEERS),
                        help=f"comma-separated libraries (default: {','.join(plan.PEERS)})")  # fmt: skip
    parser.add_argument("--workloads", metavar="W2,W7",
                        help="comma-separated workloads to run (default: all)")  # fmt: skip
    parser.add_argument("--reps", type=int, help="repetitions (default 3; quick: 1)")
    parser.add_argument(
        "--body-redis", choices=("own", "queue"), default="own",
        help="where the job bodies INCR their counter: the benchmark's own redis-server (default: "
        "the libraries' Redis sees only their own commands), or the queue's, as in a small "
        "deployment (Redis commands per job then include the bodies')",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, help="jobs of W1, W1b, W1c, W2, W6 (default 20000; quick: 2000)"
    )
    args = parser.parse_args()
    peers = [peer.strip() for peer in args.only.split(",") if peer.strip()]
    unknown = sorted(set(peers) - set(plan.PEERS))
    if unknown or not peers:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(plan.PEERS)}")
    args.peers = [peer for peer in plan.PEERS if peer in peers]
    args.workloads = [w.strip() for w in (args.workloads or "").split(",") if w.strip()] or None
    args.reps = args.reps or (1 if args.quick else 3)
    args.jobs = args.jobs or (2000 if args.quick else 20_000)
    return args


def headline(workload: str, result: dict[str, Any]) -> str:
    if "na" in result:
        return f"n/a: {result['na']}"
    if workload == "W3":
        return f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
    if workload == "W5":
        return f"{result['after_first_jobs_per_s']:,.0f} jobs/s"
    if workload == "W7":
        return (f"{result['busy_jobs_per_s']:,.0f} jobs/s first start → last "
                f"({result['of_ideal']:.0%} of {result['ideal_jobs_per_s']:,.0f}), "
                f"{result['peak_rss_mib']:.0f} MiB")  # fmt: skip
    if workload == "W7L":
        return (f"{result.get('start_rate_per_s', 0):,.0f} starts/s, most in 1 s "
                f"{result.get('most_starts_in_1s', 0):,}, {result['peak_rss_mib']:.0f} MiB")  # fmt: skip
    text = f"{result['jobs_per_s']:,.0f} jobs/s"
    if "steady_jobs_per_s" in result:
        text += f", steady {result['steady_jobs_per_s']:,.0f}, {result['peak_rss_mib']:.0f} MiB"
    return text


def prepare_venvs(peers: list[str], logdir: Path) -> dict[str, dict[str, str]]:
    for peer in peers:
        print(f"venv {peer}: {venvs.ensure_venv(peer, logdir / 'pip.log')}", flush=True)
    return {peer: venvs.versions(peer) for peer in peers}


def run_all(args: argparse.Namespace, logdir: Path) -> tuple[dict[str, Any], str]:
    sizes = plan.Sizes.for_run(args.jobs, args.quick)
    loads = plan.workloads(sizes, args.peers)
    if args.workloads:
        unknown = sorted(set(args.workloads) - {load.key for load in loads})
        if unknown:
            raise SystemExit(f"--workloads: unknown {', '.join(unknown)}; choose from "
                             + ", ".join(load.key for load in loads))  # fmt: skip
        loads = [load for load in loads if load.key in args.workloads]
    order = plan.schedule(loads, args.reps)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {load.key: {} for load in loads}
    skipped: set[tuple[str, str]] = set()
    with RedisServer() as main, RedisServer() as own_counter:
        counter = main if args.body_redis == "queue" else own_counter
        redis_version = main.version()
        for index, (rep, load, peer) in enumerate(order, 1):
            if (load.key, peer) in skipped:
                continue
            started = time.monotonic()
            result = run_step(peer, load.args, main, counter, logdir, f"{load.key}-r{rep}")
            runs[load.key].setdefault(peer, []).append(result)
            if "na" in result:
                skipped.add((load.key, peer))  # no use repeating what cannot be done
            print(
                f"[{index:>3}/{len(order)}] rep {rep} {load.key:<5} {peer:<9} "
                f"{headline(load.key, result)}  ({time.monotonic() - started:.1f} s)",
                flush=True,
            )
    document: dict[str, Any] = {
        "settings": {
            "peers": args.peers,
            "reps": args.reps,
            "quick": args.quick,
            "body_redis": args.body_redis,
            **vars(sizes),
        },
        "workloads": {load.key: load.title for load in loads},
        "runs": runs,
        "summary": {
            key: {peer: report.summarize(results) for peer, results in per_peer.items()}
            for key, per_peer in runs.items()
        },
    }
    return document, redis_version


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    logdir = LOGS / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    versions = prepare_venvs(args.peers, logdir)
    document, redis_version = run_all(args, logdir)
    info = machine.describe()
    document = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "machine_line": machine.one_line(info),
        "redis_server": redis_version,
        "versions": versions,
        "knobs": {
            **{peer: KNOBS[peer] for peer in args.peers},
            "all": COMMON_KNOBS
            + (
                "; in this run the bodies INCR on the queue's own redis-server (--body-redis queue)"
                if args.body_redis == "queue"
                else ""
            ),
        },
        **document,
    }
    stem, stamped = ("quick-latest", None) if args.quick else ("latest", stamp)
    if args.workloads:  # a partial run keeps its own files: latest.md stays the full table
        part = "-".join(key.lower() for key in args.workloads)
        stem, stamped = f"{stem}-{part}", None if args.quick else f"{part}-{stamp}"
    if args.body_redis == "queue":
        stem, stamped = f"{stem}-body-on-queue", stamped and f"body-on-queue-{stamped}"
    written = report.write(document, stem, stamped)
    print()
    print(report.markdown(document))
    print("written: " + ", ".join(str(path) for path in written))
    print(f"logs: {logdir}; took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
