"""`python -m bench.soak`: hold a steady load on a jobd fleet for minutes, calm and with chaos
(SIGKILL, Redis pauses, connection resets, SIGTERM), and report worker RSS slope, Redis memory and
keys, losses and duplicates from the ledger, invariant violations and recovery times. Part of the
load (unless --no-features) uses limits, event streams and workflows, each with its own checks.

Writes bench/results/soak-latest.{md,json}; worker logs go to bench/.logs/soak-<time>/<mode>/.
Exits 1 if any run lost a job, broke an invariant or failed a feature check, 0 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.soak import report
from bench.soak.mix import Mix
from bench.soak.run import Options, run
from jobd.config.durations import parse_duration
from tests.support.redis_server import find_redis_server

LOGS = Path(__file__).resolve().parent.parent / ".logs"


def seconds(text: str) -> float:
    """A duration: seconds as a number, or jobd's syntax ("20s", "5m", "250ms")."""
    try:
        return parse_duration(text)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} ({error})") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--mode",
        choices=("both", "calm", "chaos"),
        default="both",
        help="calm: load only; chaos: load with the fault cycle; both: a calm run, then a chaos run",
    )
    add(
        "--duration",
        type=seconds,
        default=300.0,
        help="seconds of load per run (or 5m, 90s); the drain and the checks come after",
    )
    add("--rate", type=float, default=500.0, help="jobs enqueued per second, steadily")
    add("--workers", type=int, default=3, help="jobd worker processes")
    add("--concurrency", type=int, default=50, help="worker.concurrency of each worker")
    add(
        "--job-seconds",
        type=float,
        default=0.005,
        help="what each job sleeps (asyncio) between its ledger start and end entries",
    )
    add(
        "--chaos-every",
        type=seconds,
        default=20.0,
        help="seconds between faults in the chaos run (rotation: kill, pause, reset, term)",
    )
    add("--pause-seconds", type=seconds, default=3.0, help="length of each Redis pause (SIGSTOP)")
    add(
        "--keep-result",
        type=seconds,
        default=argparse.SUPPRESS,
        help="defaults.keep_result of the workers (default: 60 s, or a quarter of a run shorter "
        "than 4 minutes, so that memory can level off within the run)",
    )
    add("--lease-timeout", type=seconds, default=2.0, help="worker.lease_timeout")
    add("--drain-timeout", type=seconds, default=5.0, help="worker.drain_timeout")
    add(
        "--features",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the feature mix, part of --rate: jobs under a rate and a concurrency limit (half in "
        "groups), jobs streaming events (some followed live), workflows (bench/soak/mix.py)",
    )
    add("--limit-rate", type=int, default=Mix.limit_rate, help="rate limit of `limited`, per s")
    add(
        "--limited-rate",
        type=float,
        default=Mix.limited_rate,
        help="`limited` jobs enqueued per second (of --rate)",
    )
    add("--seed", type=int, default=4711, help="seed of the random choice of workers to kill/stop")
    add(
        "--output",
        default="soak-latest",
        help="file stem under bench/results/ for the .md and .json reports",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.workers < 1 or args.concurrency < 1 or args.duration <= 0:
        parser.error("--rate, --duration, --workers and --concurrency must be positive")
    args.mix = (
        Mix(limit_rate=args.limit_rate, limited_rate=args.limited_rate) if args.features else None
    )
    if args.mix is not None and args.mix.jobs_per_second >= args.rate:
        parser.error(f"--rate must be above the feature mix's {args.mix.jobs_per_second:g} jobs/s")
    if getattr(args, "keep_result", None) is None:
        args.keep_result = 60.0 if args.duration >= 240 else max(5.0, round(args.duration / 4))
    return args


def redis_version() -> str:
    reply = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True)
    for word in reply.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return reply.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.now(UTC)
    logs = LOGS / f"soak-{now.strftime('%Y%m%d-%H%M%S')}"
    modes = ["calm", "chaos"] if args.mode == "both" else [args.mode]
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    for mode in modes:
        options = Options(
            mode=mode, duration=args.duration, rate=args.rate, workers=args.workers,
            concurrency=args.concurrency, job_seconds=args.job_seconds,
            chaos_every=args.chaos_every, pause_seconds=args.pause_seconds,
            keep_result=args.keep_result, lease_timeout=args.lease_timeout,
            drain_timeout=args.drain_timeout, seed=args.seed, mix=args.mix,
        )  # fmt: skip
        runs.append(run(options, logs / mode))
    info = machine.describe()
    document = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "-m", "bench.soak", *(argv or sys.argv[1:])]),
        "machine": info,
        "machine_line": machine.one_line(info),
        "redis_server": redis_version(),
        "seconds": round(time.monotonic() - began, 1),
        "logs": str(logs),
        "runs": runs,
    }
    markdown, data = report.write(document, args.output)
    print(markdown.read_text())
    print(f"written: {markdown} and {data}; worker logs in {logs}", file=sys.stderr)
    return 1 if any(report.failed(r) for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
