"""What the ledger and the final Redis state say about one run, through the chaos suite's checker
(`tests.support.checker`): losses, duplicates and their causes, invariant violations, queue wait,
and the recovery times of the faults.

The soak keeps results for `keep_result` only (shorter than the run, so that Redis memory can level
off), so the checker runs with `results_expired=True`: an acknowledged job whose hash expired must
have a run that ended in the ledger, and a hash still there is fine as long as it has a TTL.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bench.soak.chaos import Fault
from tests.support.checker import Entry, Expect, RedisState, check, runs_of

STILL_THERE = "still there after keep_result"


def forget_expired(state: RedisState) -> None:
    """Drop keys that expired while the snapshot was taken (an empty hash, PTTL -2)."""
    state.jobs = {job_id: fields for job_id, fields in state.jobs.items() if fields}
    state.ttls = {name: ttl for name, ttl in state.ttls.items() if ttl != -2}


def violations(entries: list[Entry], state: RedisState, expect: Expect) -> list[str]:
    """The checker's violations, less "still there after keep_result" (results within their
    keep_result window are expected in a soak); a job hash without a TTL is reported instead."""
    problems = [p for p in check(entries, state, expect) if STILL_THERE not in p]
    dead = set().union(*(q.dead for q in state.queues.values()))
    for name, ttl in sorted(state.ttls.items()):
        job_id = name.rpartition(":job:")[2]
        if ":job:" in name and ttl < 0 and job_id not in dead:
            problems.append(f"I8 {name}: finished job without a TTL (leaked key)")
    return problems


def losses(entries: list[Entry], acknowledged: Collection[str]) -> list[str]:
    """Acknowledged ids with no run that ended in the ledger."""
    ended = {e.job_id for e in entries if e.event == "end"}
    return sorted(set(acknowledged) - ended)


def duplicates(
    entries: list[Entry], killed: Collection[int], drained: Collection[int]
) -> dict[str, Any]:
    """Jobs that ran more than once, and why each re-run happened (from the run before it)."""
    causes: Counter[str] = Counter()
    jobs = 0
    examples: list[str] = []
    for job_id, runs in runs_of(entries).items():
        if len(runs) < 2:
            continue
        jobs += 1
        for before, _ in itertools.pairwise(runs):
            if before.pid in killed:
                cause = "killed worker, run ended (outcome not stored)" if before.end else (
                    "killed worker, run unfinished")  # fmt: skip
            elif before.pid in drained and before.end is None:
                cause = "drained worker, run requeued"
            else:
                cause = "unexplained"
                if len(examples) < 10:
                    shown = [(r.pid, r.try_number, r.end is not None) for r in runs]
                    examples.append(f"{job_id}: runs (pid, try, ended) {shown}")
            causes[cause] += 1
    return {
        "jobs": jobs,
        "extra_runs": sum(causes.values()),
        "causes": dict(sorted(causes.items())),
        "unexplained_examples": examples,
    }


def queue_wait(entries: list[Entry], enqueued_at: Mapping[str, float]) -> dict[str, float | None]:
    """Milliseconds from the enqueue call to the first start, over the steady jobs (ids s…)."""
    first: dict[str, float] = {}
    for entry in entries:
        if entry.event == "start" and entry.job_id not in first:
            first[entry.job_id] = entry.time
    waits = sorted(
        (first[job_id] - at) * 1000
        for job_id, at in enqueued_at.items()
        if job_id.startswith("s") and job_id in first
    )
    return {
        "p50": percentile(waits, 50),
        "p99": percentile(waits, 99),
        "max": waits[-1] if waits else None,
    }


def percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return sorted(values)[index]


RECOVERIES = {
    "kill": "SIGKILL → job restarted",
    "pause": "Redis back → first completion",
    "reset": "connection reset → first completion",
    "term": "SIGTERM → exit (under load)",
}


def recoveries(faults: Sequence[Fault], final_exits: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Per kind of fault: how often, the seconds measured (median, max), and how many were not
    measured (no run open at a kill, or no matching ledger entry before the end)."""
    table: dict[str, dict[str, Any]] = {}
    for kind, label in RECOVERIES.items():
        mine = [f for f in faults if f.kind == kind]
        measured = [
            s
            for s in (f.seconds if f.watch is None else f.watch.seconds for f in mine)
            if s is not None
        ]
        table[kind] = _summary(label, len(mine), measured)
    table["stop"] = _summary("SIGTERM → exit (idle, end of run)", len(final_exits), final_exits)
    return table


def _summary(label: str, count: int, measured: Sequence[float]) -> dict[str, Any]:
    return {
        "label": label,
        "count": count,
        "measured": len(measured),
        "median_s": statistics.median(measured) if measured else None,
        "max_s": max(measured) if measured else None,
        "all_s": [round(s, 3) for s in measured],
    }


def fault_rows(faults: Sequence[Fault]) -> list[dict[str, Any]]:
    rows = []
    for f in faults:
        seconds = f.seconds if f.watch is None else f.watch.seconds
        rows.append({
            "kind": f.kind, "at_s": round(f.at, 1), "worker": f.worker, "pid": f.pid,
            "orphans": f.orphans, "exit_code": f.exit_code, "note": f.note,
            "seconds": None if seconds is None else round(seconds, 3),
        })  # fmt: skip
    return rows
