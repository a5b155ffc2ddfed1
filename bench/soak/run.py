"""One soak run, calm or with chaos: bring up the world, hold the load for the duration (sampling,
and in chaos mode cycling the faults), stop producing, wait until every acknowledged job has ended,
SIGTERM the workers, then judge the ledger and the final Redis state. Returns a JSON-able dict
that `bench.soak.report` renders.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.soak import analysis
from bench.soak.chaos import ChaosMonkey
from bench.soak.features import LimitWatch, feature_report
from bench.soak.ledger import LedgerTail
from bench.soak.mix import FeatureProducer, Follower, Mix
from bench.soak.producer import Acks, Producer
from bench.soak.sampler import MIB, Sample, Sampler, key_slope, memory_slope, rss_mib, rss_table
from bench.soak.world import LEDGER_KEY, PREFIX, QUEUE, Settings, World
from tests.support.checker import Expect, read_ledger, snapshot

DRAIN_GUARD = 180.0
"""After the load: how long to wait for every acknowledged job to end (a hang guard)."""
PROGRESS_EVERY = 10.0
RSS_WARMUP = 60.0
"""Seconds of a worker process's life left out of its RSS slope (or half the run, if shorter)."""
TROUBLE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|lease lost")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+")
"""Log lines worth a look (a killed worker's jobs "queued again" are expected, not listed)."""


@dataclass(frozen=True)
class Options:
    mode: str
    duration: float
    rate: float
    workers: int
    concurrency: int
    job_seconds: float
    chaos_every: float
    pause_seconds: float
    keep_result: float
    lease_timeout: float
    drain_timeout: float
    seed: int
    mix: Mix | None = None
    """The feature mix (limits, event streams, workflows), part of `rate`; None: steady jobs only."""


def run(options: Options, logs: Path) -> dict[str, Any]:
    mix = options.mix
    settings = Settings(
        options.workers, options.concurrency, options.lease_timeout, options.drain_timeout,
        options.keep_result, limit_rate=mix.limit_rate if mix else None,
        limit_concurrency=mix.limit_concurrency if mix else 0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="jobd-soak-") as tmp:
        world = World(Path(tmp), logs, settings)
        try:
            return _run(world, options)
        finally:
            world.close()


def _say(options: Options, text: str) -> None:
    print(f"[soak {options.mode}] {text}", file=sys.stderr, flush=True)


def _run(world: World, options: Options) -> dict[str, Any]:
    world.start()
    tail = LedgerTail(world.ledger(), LEDGER_KEY)
    tail.start()
    acks = Acks()
    sampler = Sampler(world, acks.count, tail.done)
    baseline = sampler.sample()
    t0 = time.monotonic()
    sampler.t0 = t0
    sampler.start()
    mix = options.mix
    producer = Producer(
        world.redis.url,
        PREFIX,
        LEDGER_KEY,
        acks,
        rate=options.rate - (mix.jobs_per_second if mix else 0.0),
        job_seconds=options.job_seconds,
    )
    producer.start()
    follower = features = watch = None
    if mix is not None:
        follower = Follower(world.redis.url, PREFIX, mix.tokens)
        follower.start()
        features = FeatureProducer(world.redis.url, PREFIX, LEDGER_KEY, acks, mix, follower)
        features.start()
        watch = LimitWatch(world, PREFIX, QUEUE, lambda: list(features.sent.limited), tail.missing)
        watch.start()
    monkey = None
    if options.mode == "chaos":
        monkey = ChaosMonkey(
            world, tail, acks, lambda: time.monotonic() - t0, every=options.chaos_every,
            seed=options.seed, pause_seconds=options.pause_seconds,
        )  # fmt: skip
        monkey.start()
    _say(options, f"{options.workers} workers, {options.rate:g} jobs/s for {options.duration:g} s")
    while (left := t0 + options.duration - time.monotonic()) > 0:
        time.sleep(min(PROGRESS_EVERY, left))
        _progress(options, sampler.samples[-1] if sampler.samples else baseline, world)
    producer.stop()
    if features is not None:
        features.stop()
    if monkey is not None:
        monkey.stop()
    world.heal()
    load_seconds = time.monotonic() - t0

    drained_at = _wait_all_ended(world, tail, acks, options)
    drain_seconds = drained_at - t0 - load_seconds
    if follower is not None:
        follower.finish(DRAIN_GUARD)
    limits_left = watch.limit_sizes() if watch is not None else {}
    if watch is not None:
        watch.stop()
    final_exits = world.stop_all()
    sampler.stop()
    end = sampler.sample()
    tail.stop()

    with world.ledger() as ledger:
        entries = read_ledger(ledger, LEDGER_KEY)
    with world.client(timeout=60) as conn:
        state = snapshot(conn, PREFIX)
    analysis.forget_expired(state)
    ran = {e.job_id for e in entries}
    acknowledged = set(acks.ids) | (set(acks.unsure) & ran)
    killed = monkey.killed if monkey else {}
    drained = monkey.drained if monkey else {}
    exits = {p.name: p.exit_code for p in world.fleet.processes if p.how != "killed"}
    expect = Expect(
        acknowledged, killed=set(killed), drained=set(drained), stopped={**killed, **drained},
        exits=exits, clean_exit=not killed, results_expired=True,
    )  # fmt: skip
    problems = analysis.violations(entries, state, expect)
    time.sleep(max(0.0, drained_at + options.keep_result + 2 - time.monotonic()))
    expired = sampler.sample()  # once every result has expired: what stays
    sampler.close()
    lost = analysis.losses(entries, acknowledged)
    faults = monkey.faults if monkey else []
    samples = sampler.samples
    half = load_seconds / 2
    used = [s.used_memory for s in samples if s.used_memory is not None]
    keys = [s.dbsize for s in samples if s.dbsize is not None]
    rss = rss_table(sampler.series, since=half, warmup=min(RSS_WARMUP, half))
    slopes = [r["slope_mib_per_min"] for r in rss if isinstance(r["slope_mib_per_min"], float)]
    steady = [acked for acked in acks.ids if acked.startswith("s")]
    mixed = [acked for acked in acks.ids if acked.startswith(("L", "e", "f"))]  # bench.soak.mix
    result: dict[str, Any] = {
        "mode": options.mode,
        "options": asdict(options),
        "load_seconds": round(load_seconds, 1),
        "drain_seconds": round(drain_seconds, 1),
        "acked": len(acknowledged),
        "acked_steady": len(steady),
        "acked_features": len(mixed),
        "acked_long": len(acknowledged) - len(steady) - len(mixed),
        "rate_achieved": round(len(steady) / producer.seconds, 1) if producer.seconds else None,
        "rate_achieved_all": round((len(steady) + len(mixed)) / producer.seconds, 1)
        if producer.seconds
        else None,
        "unsure": len(acks.unsure),
        "producer_retries": acks.retries,
        "producer_error": repr(producer.error) if producer.error else None,
        "completed": len(acknowledged) - len(lost),
        "runs": sum(1 for e in entries if e.event == "start"),
        "losses": len(lost),
        "lost_ids": lost[:20],
        "duplicates": analysis.duplicates(entries, set(killed), set(drained)),
        "violations": problems,
        "queue_wait_ms": analysis.queue_wait(entries, acks.enqueued_at),
        "rss": rss,
        "rss_max_slope_mib_per_min": max(slopes) if slopes else None,
        "redis": {
            "used_memory_start_mib": _mib(baseline.used_memory),
            "used_memory_peak_mib": _mib(max(used) if used else None),
            "used_memory_end_mib": _mib(end.used_memory),
            "used_memory_after_keep_result_mib": _mib(expired.used_memory),
            "used_memory_slope_mib_per_min": _round(
                memory_slope(samples, max(half, options.keep_result + 5), load_seconds)
            ),
            "keys_start": baseline.dbsize,
            "keys_peak": max(keys) if keys else None,
            "keys_end": end.dbsize,
            "keys_after_keep_result": expired.dbsize,
            "job_hashes_end": len(state.jobs),
            "keys_expected": round(options.rate * options.keep_result),
        },
        "recovery": analysis.recoveries(faults, final_exits),
        "faults": analysis.fault_rows(faults),
        "chaos_errors": monkey.errors if monkey else [],
        "exit_codes": {p.name: p.exit_code for p in world.fleet.processes},
        "log_trouble": _log_trouble(world),
        "ledger_read_errors": tail.errors,
        "timeline": [_row(s) for s in samples[:: max(1, len(samples) // 60)]],
    }
    result["redis"]["keys_slope_per_min"] = _round(
        key_slope(samples, max(half, options.keep_result + 5), load_seconds)
    )
    if mix is not None and features is not None and follower is not None and watch is not None:
        result["features"] = feature_report(mix, features, follower, watch, limits_left, entries)
    return result


def _wait_all_ended(world: World, tail: LedgerTail, acks: Acks, options: Options) -> float:
    """Until every acknowledged job has an `end` in the ledger and nothing is queued, scheduled or
    running in Redis (or the guard passes; the checker then reports what is missing)."""
    ids = acks.snapshot()
    deadline = time.monotonic() + DRAIN_GUARD
    while time.monotonic() < deadline:
        ids = tail.missing(ids)
        if not ids:
            try:
                if world.backlog() == 0:
                    break
            except OSError:
                pass
        time.sleep(0.1)
    else:
        _say(options, f"drain guard passed: {len(ids)} acknowledged jobs not ended")
    return time.monotonic()


def _progress(options: Options, sample: Sample, world: World) -> None:
    rss = [f"{p.name}={mib:.0f}" for p in world.fleet.live() if (mib := rss_mib(p.pid)) is not None]
    _say(options, f"t={sample.t:4.0f}s acked={sample.acked} done={sample.done} "
                  f"keys={sample.dbsize} used_memory={_mib(sample.used_memory)} MiB "
                  f"rss MiB {' '.join(rss)}")  # fmt: skip


def _log_trouble(world: World) -> list[str]:
    """Log lines that look like trouble, grouped by message (timestamps cut): "count x message
    (workers)", most frequent first, at most 15 kinds."""
    seen: dict[str, list[str]] = {}
    for process in world.fleet.processes:
        for line in process.daemon.log_text().splitlines():
            if TROUBLE.search(line):
                message = STAMP.sub("", line)[:200]
                seen.setdefault(message, []).append(process.name)
    ranked = sorted(seen.items(), key=lambda item: -len(item[1]))
    return [
        f"{len(names)} x {message} ({', '.join(sorted(set(names)))})"
        for message, names in ranked[:15]
    ]


def _row(sample: Sample) -> dict[str, Any]:
    return {
        "t": round(sample.t, 1), "acked": sample.acked, "done": sample.done,
        "keys": sample.dbsize, "used_memory_mib": _mib(sample.used_memory),
    }  # fmt: skip


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
