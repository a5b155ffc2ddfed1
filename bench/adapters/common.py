"""The driver every adapter shares: `python -m bench.adapters.<peer> STEP [options]`.

Steps (each prints one line `BENCH-RESULT {json}` on stdout, or `{"na": reason}`):
- `enqueue` / `bulk`: N no-op jobs through the single (one awaited call at a time) or batch API,
  with no worker running.
- `drain`: N jobs queued first (untimed), then `--workers` worker processes are spawned; the
  completion counter is polled every 2 ms until it reaches N; memory of the worker trees is sampled.
- `latency`: a running, warmed-up worker; jobs enqueued at a steady `--rate`; each job records its
  start time, the producer its enqueue time.
The counter, the start times and the polls live on a second redis-server (`--counter`), so the
library's server (`--redis`) sees only the library's commands: their counts come from its
`INFO commandstats` and its round trips from `total_reads_processed` (one server-side read per
request or pipeline), both reset right before the timed part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.adapters.peer import NotSupported, Options, Peer
from bench.adapters.steps import STEPS

RESULT_PREFIX = "BENCH-RESULT "

__all__ = ["NotSupported", "Options", "Peer", "main"]


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--redis", required=True, help="the library's redis-server")
    parser.add_argument("--counter", required=True, help="the benchmark's own redis-server")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--function", choices=["noop", "sleep", "llm", "llm_limited"], default="noop"
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--logdir", type=Path, default=Path("."))
    parser.add_argument("--tag", default="run")
    a = parser.parse_args(argv)
    return Options(
        step=a.step, redis_url=a.redis, counter_url=a.counter, jobs=a.jobs,
        concurrency=a.concurrency, workers=a.workers, function=a.function, rate=a.rate,
        batch=a.batch, logdir=a.logdir, tag=a.tag,
    )  # fmt: skip


def main(peer: Peer) -> None:
    """Run one step for `peer` and print its result line."""
    options = parse(sys.argv[1:])
    os.environ["BENCH_REDIS_URL"] = options.redis_url
    os.environ["BENCH_COUNTER_URL"] = options.counter_url
    try:
        result = asyncio.run(STEPS[options.step](peer, options))
    except NotSupported as error:
        result = {"na": str(error)}
    except Exception as error:  # noqa: BLE001 - reported to the orchestrator as n/a
        traceback.print_exc()
        result = {"na": f"error: {type(error).__name__}: {error}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
