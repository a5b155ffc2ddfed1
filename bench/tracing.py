"""What tracing costs (docs/tracing.md): the no-op drain with tracing off against a commit from
before tracing, and with tracing on (the SDK with a batch processor and an exporter that drops
the spans, so the figure is jobd's and the SDK's span work, not an exporter's); and the awaited
enqueue in the producer with and without a tracer provider.

    python -m bench.tracing [--baseline REV] [--jobs 20000] [--reps 3] [--enqueues 5000]

Drains alternate (this tree, baseline, traced) so that drift hits each alike; medians."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis as redis_py
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench import limits, machine
from bench.events import enqueue, measured_drain
from bench.limits import baseline_tree, publish, remove_tree, run_benchmark
from bench.redis import RedisServer
from jobd.client import Client

DEFAULT_BASELINE = "7b34d44"
"""The commit before the worker's tracing (the producer's tracer check is older)."""
JOBS = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Dropped(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def startup(state):
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)


async def noop() -> None:
    pass
"""
JOBS_MODULE = "tracing_bench_jobs"
(limits.JOBS_DIR / f"{JOBS_MODULE}.py").write_text(JOBS)


class Dropped(SpanExporter):
    """Exports nothing: the cost measured is making the spans."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def config(url: str, prefix: str, traced: bool) -> str:
    tracing = (
        f'[tracing]\nenabled = true\n\n[hooks]\nstartup = "{JOBS_MODULE}:startup"\n\n'
        if traced
        else ""
    )
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{prefix}"\n\n'
        "[worker]\nconcurrency = 100\n\n"
        '[http]\nlisten = "127.0.0.1:0"\n\n'
        f"{tracing}"
        f'[functions.noop]\npath = "{JOBS_MODULE}:noop"\n'
    )


async def drain(url: str, prefix: str, count: int, tree: Path, traced: bool) -> dict[str, float]:
    """Enqueue `count` no-op jobs (untraced producer), drain them with one worker from `tree`."""
    sync = redis_py.Redis.from_url(url)
    sync.flushdb()
    async with Client(url, key_prefix=prefix, tracing=False) as client:
        jobs = await enqueue(client, "noop", [()] * count)
        figures = await measured_drain(
            client, sync, prefix, jobs, config(url, prefix, traced), tree
        )
    sync.close()
    return figures


async def enqueue_rate(url: str, count: int, provider: TracerProvider | None) -> float:
    """Awaited enqueues per second from one producer (traced when `provider` is given)."""
    async with Client(
        url, key_prefix="w1", tracing=provider is not None, tracer_provider=provider
    ) as client:
        for _ in range(200):  # warm up: connections, scripts, the tracer
            await client.enqueue("noop")
        started = time.perf_counter()
        for _ in range(count):
            await client.enqueue("noop")
        return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with RedisServer() as server:
        url = server.url
        tree = baseline_tree(args.baseline)
        runs: dict[str, list[dict[str, float]]] = {"off": [], "baseline": [], "on": []}
        enqueues: dict[str, list[float]] = {"off": [], "on": []}
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        try:
            for rep in range(args.reps):
                runs["off"].append(await drain(url, f"a{rep}", args.jobs, limits.ROOT, False))
                runs["baseline"].append(await drain(url, f"b{rep}", args.jobs, tree, False))
                runs["on"].append(await drain(url, f"c{rep}", args.jobs, limits.ROOT, True))
                enqueues["off"].append(await enqueue_rate(url, args.enqueues, None))
                enqueues["on"].append(await enqueue_rate(url, args.enqueues, provider))
        finally:
            remove_tree(tree)
            provider.shutdown()
    return {"machine": machine.describe(), "args": vars(args), "drains": runs, "enqueues": enqueues}


def render(result: dict[str, Any]) -> str:
    drains, enqueues, args = result["drains"], result["enqueues"], result["args"]

    def med(name: str, key: str) -> float:
        return statistics.median(run[key] for run in drains[name])

    off, base, on = (med(n, "jobs_per_s") for n in ("off", "baseline", "on"))
    e_off, e_on = (statistics.median(enqueues[n]) for n in ("off", "on"))
    lines = [
        f"# Tracing benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`python -m bench.tracing --baseline {args['baseline']} --jobs {args['jobs']} "
        f"--reps {args['reps']} --enqueues {args['enqueues']}`",
        "",
        f"- Machine: {machine.one_line(result['machine'])}; jobd commit "
        f"{result['machine']['jobd_commit']}; workers are `python -m jobd run` processes",
        "",
        "| measure | result |",
        "|---|---|",
        f"| drain of {args['jobs']:,} no-op jobs, concurrency 100, tracing off | {off:,.0f} jobs/s "
        f"({off / base:.1%} of the baseline); {med('off', 'commands_per_job'):.1f} commands, "
        f"{med('off', 'script_us_per_job'):.1f} µs of scripts per job |",
        f"| the same at {args['baseline']} (before tracing) | {base:,.0f} jobs/s; "
        f"{med('baseline', 'commands_per_job'):.1f} commands, "
        f"{med('baseline', 'script_us_per_job'):.1f} µs of scripts per job |",
        f"| the same with [tracing] enabled (SDK, batch processor, spans dropped) | {on:,.0f} "
        f"jobs/s ({on / off:.1%} of off): {(1 / on - 1 / off) * 1e6:.1f} µs per job in the worker |",
        f"| awaited enqueue, one producer, no tracer provider | {e_off:,.0f}/s |",
        f"| awaited enqueue with a tracer provider (a `send` span each) | {e_on:,.0f}/s: "
        f"{(1 / e_on - 1 / e_off) * 1e6:.1f} µs per enqueue |",
        "",
        "Every run (jobs/s): " + "; ".join(
            f"{name} " + ", ".join(f"{run['jobs_per_s']:,.0f}" for run in drains[name])
            for name in ("off", "baseline", "on")
        ),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit before tracing")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--reps", type=int, default=3, help="drains of each kind")
    parser.add_argument("--enqueues", type=int, default=5_000, help="awaited enqueues per run")
    return parser.parse_args()


if __name__ == "__main__":
    outcome = run_benchmark(main(parse_args()))
    publish("tracing", render(outcome), outcome)
