"""What encrypted payloads cost (docs/encryption.md): W1, the awaited enqueue of one producer,
and W2, the drain of no-op jobs by one worker, each with keys and without, alternated in one run.

    python -m bench.encryption [--jobs 20000] [--reps 3] [--enqueues 5000]

With keys, the producer seals each payload and the worker opens it and seals the result
(AES-256-GCM, jobd.crypto); the jobs' arguments are a short text, as most jobs'."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import redis as redis_py

from bench import limits, machine
from bench.events import measured_drain
from bench.limits import publish, run_benchmark
from bench.redis import RedisServer
from jobd.client import Client
from jobd.crypto import new_key

BATCH = 500
JOBS = """
async def echo(text: str) -> str:
    return text
"""
JOBS_MODULE = "encryption_bench_jobs"
(limits.JOBS_DIR / f"{JOBS_MODULE}.py").write_text(JOBS)
KEY_ENV = "JOBD_BENCH_ENCRYPTION_KEY"
ARGUMENT = "someone@example.com"


def config(url: str, prefix: str, sealed: bool) -> str:
    keys = f'encryption_keys = ["${{{KEY_ENV}}}"]\n' if sealed else ""
    return (
        f'[redis]\nurl = "{url}"\nkey_prefix = "{prefix}"\n\n'
        f"[worker]\nconcurrency = 100\n{keys}\n"
        '[http]\nlisten = "127.0.0.1:0"\n\n'
        f'[functions.echo]\npath = "{JOBS_MODULE}:echo"\n'
    )


def client(url: str, prefix: str, key: str, sealed: bool) -> Client:
    return Client(url, key_prefix=prefix, encryption_keys=[key] if sealed else [])


async def drain(url: str, prefix: str, count: int, key: str, sealed: bool) -> dict[str, float]:
    sync = redis_py.Redis.from_url(url)
    sync.flushdb()
    async with client(url, prefix, key, sealed) as producer:
        jobs = []
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            jobs += await producer.enqueue_many([("echo", (ARGUMENT,), {})] * size)
        text = config(url, prefix, sealed)
        figures = await measured_drain(producer, sync, prefix, jobs, text, limits.ROOT)
        assert await jobs[-1].result(timeout=10) == ARGUMENT  # the answer opens
    sync.close()
    return figures


async def enqueue_rate(url: str, count: int, key: str, sealed: bool) -> float:
    async with client(url, "w1", key, sealed) as producer:
        for _ in range(200):
            await producer.enqueue("echo", ARGUMENT)
        started = time.perf_counter()
        for _ in range(count):
            await producer.enqueue("echo", ARGUMENT)
        return count / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    key = new_key()
    os.environ[KEY_ENV] = key  # the workers' jobs.toml reads it
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "sealed": []}
    enqueues: dict[str, list[float]] = {"plain": [], "sealed": []}
    with RedisServer() as server:
        for rep in range(args.reps):
            for name, sealed in (("plain", False), ("sealed", True)):
                runs[name].append(await drain(server.url, f"{name}{rep}", args.jobs, key, sealed))
                enqueues[name].append(await enqueue_rate(server.url, args.enqueues, key, sealed))
    return {"machine": machine.describe(), "args": vars(args), "drains": runs, "enqueues": enqueues}


def render(result: dict[str, Any]) -> str:
    drains, enqueues, args = result["drains"], result["enqueues"], result["args"]

    def med(name: str, key: str = "jobs_per_s") -> float:
        return statistics.median(run[key] for run in drains[name])

    plain, sealed = med("plain"), med("sealed")
    e_plain, e_sealed = (statistics.median(enqueues[n]) for n in ("plain", "sealed"))
    lines = [
        f"# Encryption benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`python -m bench.encryption --jobs {args['jobs']} --reps {args['reps']} "
        f"--enqueues {args['enqueues']}`",
        "",
        f"- Machine: {machine.one_line(result['machine'])}; jobd commit "
        f"{result['machine']['jobd_commit']}; the worker is a `python -m jobd run` process",
        "",
        "| measure | without keys | with a key | cost |",
        "|---|---|---|---|",
        f"| W1: awaited enqueue, one producer | {e_plain:,.0f}/s | {e_sealed:,.0f}/s | "
        f"{(1 / e_sealed - 1 / e_plain) * 1e6:+.1f} µs per enqueue ({e_sealed / e_plain:.1%}) |",
        f"| W2: drain of {args['jobs']:,} jobs, concurrency 100 | {plain:,.0f} jobs/s | "
        f"{sealed:,.0f} jobs/s | {(1 / sealed - 1 / plain) * 1e6:+.1f} µs per job "
        f"({sealed / plain:.1%}) |",
        f"| Redis per job (W2) | {med('plain', 'script_us_per_job'):.1f} µs of scripts | "
        f"{med('sealed', 'script_us_per_job'):.1f} µs of scripts | |",
        "",
        "Every drain (jobs/s): "
        + "; ".join(
            f"{name} " + ", ".join(f"{run['jobs_per_s']:,.0f}" for run in drains[name])
            for name in ("plain", "sealed")
        ),
    ]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--reps", type=int, default=3, help="runs of each kind")
    parser.add_argument("--enqueues", type=int, default=5_000, help="awaited enqueues per run")
    return parser.parse_args()


if __name__ == "__main__":
    outcome = run_benchmark(main(parse_args()))
    publish("encryption", render(outcome), outcome)
