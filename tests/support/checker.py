"""The invariants I1-I8 of the chaos suite (docs/reliability.md §5.1), checked over the ledger and the
final Redis state. One checker for every scenario; each scenario states what it expects
(:class:`Expect`): which jobs were acknowledged, which must be dead-lettered, which processes were
killed or drained (their unfinished runs explain a re-run), and which jobs may have a zombie.

:func:`check` is pure: it takes the ledger entries (:func:`read_ledger`) and a
:class:`RedisState` (:func:`snapshot`) and returns the violations, one line each;
:func:`assert_invariants` raises with all of them. ``tests/chaos/test_checker.py`` proves that it
fails on bad ledgers.

Ledger entries are ``event|job id|try|pid|time`` lines (``tests/jobs_for_tests.py``). A *run* is
one (pid, try) of a job: its ``start`` entry and, if it got that far, its ``end`` entry. Jobs of the
``chaos`` family return ``"pid|try"``, so the stored result names the run that stored it.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import redis

TERMINAL = {"succeeded", "failed", "aborted"}
FIXED_QUEUE_KEYS = {
    "queued", "scheduled", "running", "dead", "workers", "seq", "wake", "activity", "functions",
}  # fmt: skip
"""Per-queue keys that live without a TTL (bounded: one each per queue)."""


@dataclass(frozen=True, slots=True)
class Entry:
    event: str
    job_id: str
    try_number: int
    pid: int
    time: float


@dataclass(slots=True)
class Run:
    """One try of one job in one process, as the ledger saw it."""

    pid: int
    try_number: int
    start: float
    end: float | None = None


@dataclass(slots=True)
class QueueState:
    queued: set[str] = field(default_factory=set)
    scheduled: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)
    owned: dict[str, set[str]] = field(default_factory=dict)
    """worker id -> job ids in its owned set"""
    wake_length: int = 0


@dataclass(slots=True)
class RedisState:
    """What Redis holds under one key prefix."""

    prefix: str
    queues: dict[str, QueueState] = field(default_factory=dict)
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    """job id -> its hash (decoded)"""
    ttls: dict[str, int] = field(default_factory=dict)
    """every key under the prefix -> PTTL (-1: none)"""
    registry: set[str] = field(default_factory=set)
    """worker ids in the registry index"""


@dataclass(frozen=True, slots=True)
class Expect:
    """What one scenario promises; see the module docstring."""

    acknowledged: Collection[str]
    """Ids whose enqueue returned (and "maybe" ids the producer retried until it did)."""
    dead: Mapping[str, str] = field(default_factory=dict)
    """Ids that must end dead-lettered -> a text their error message must contain."""
    killed: Collection[int] = ()
    """Pids killed (or crashed): their unfinished runs explain one re-run each and count as lost."""
    drained: Collection[int] = ()
    """Pids whose unfinished runs were requeued by a drain: one re-run each, not lost."""
    stopped: Mapping[int, float] = field(default_factory=dict)
    """Pid -> when it stopped (ledger clock): closes its unfinished runs for I3."""
    zombies: Collection[str] = ()
    """Ids whose runs may overlap (a partitioned or paused owner): their result must not be the
    zombie's, and each zombie run explains one re-run."""
    extra_starts: int = 0
    """Further re-runs allowed per id beyond those explained (0: exactly once otherwise)."""
    lost: Mapping[str, int] | None = None
    """Expected `lost` per id; default: its unfinished runs in killed pids."""
    exits: Mapping[str, int | None] = field(default_factory=dict)
    """Daemon name -> exit code (None: still running). Every one must be 0 or None (I7)."""
    succeeded_metric: float | None = None
    """Sum of jobd_jobs_finished_total{outcome=succeeded} over the workers, when none was killed."""
    clean_exit: bool = True
    """Every worker left (SIGTERM): no heartbeat, claim or registry entry remains."""
    results_expired: bool = False
    """keep_result has passed: only dead-lettered job hashes may remain."""


def read_ledger(client: redis.Redis, key: str) -> list[Entry]:
    entries = []
    for line in client.lrange(key, 0, -1):
        event, job_id, try_number, pid, at = line.decode().split("|")
        entries.append(Entry(event, job_id, int(try_number), int(pid), float(at)))
    return entries


def snapshot(client: redis.Redis, prefix: str) -> RedisState:
    """Read everything under `prefix` (SCAN; for tests, not production)."""
    state = RedisState(prefix)
    names = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*", count=1000))
    for name in names:
        state.ttls[name] = int(client.pttl(name))
        rest = name[len(prefix) + 1 :]
        if rest == "registry":
            state.registry = {m.decode() for m in client.zrange(name, 0, -1)}
        if not rest.startswith("{") or "}:" not in rest:
            continue
        queue, _, kind = rest[1:].partition("}:")
        keys = state.queues.setdefault(queue, QueueState())
        if kind in ("queued", "scheduled", "running", "dead", "workers"):
            getattr(keys, kind).update(m.decode() for m in client.zrange(name, 0, -1))
        elif kind == "wake":
            keys.wake_length = int(client.llen(name))
        elif kind.startswith("owned:"):
            keys.owned[kind[6:]] = {m.decode() for m in client.smembers(name)}
        elif kind.startswith("job:"):
            fields = client.hgetall(name)
            state.jobs[kind[4:]] = {
                k.decode(): v.decode(errors="replace") for k, v in fields.items()
            }
    return state


def runs_of(entries: list[Entry]) -> dict[str, list[Run]]:
    """Job id -> its runs in start order."""
    runs: dict[str, dict[tuple[int, int], Run]] = defaultdict(dict)
    ends: list[Entry] = []
    for entry in entries:
        if entry.event == "start":
            runs[entry.job_id][(entry.pid, entry.try_number)] = Run(
                entry.pid, entry.try_number, entry.time
            )
        else:
            ends.append(entry)
    orphans = {}
    for entry in ends:
        run = runs.get(entry.job_id, {}).get((entry.pid, entry.try_number))
        if run is None:
            orphans[entry.job_id] = entry
        else:
            run.end = entry.time
    result = {job_id: sorted(by.values(), key=lambda r: r.start) for job_id, by in runs.items()}
    for job_id, entry in orphans.items():  # an end without a start: a broken ledger
        result.setdefault(job_id, []).append(Run(entry.pid, entry.try_number, float("nan")))
    return result


def _worker_pid(token: str) -> int | None:
    """The pid inside a fencing token `host:pid:uuid:nonce`."""
    parts = token.split(":")
    try:
        return int(parts[-3])
    except (IndexError, ValueError):
        return None


def check(entries: list[Entry], state: RedisState, expect: Expect) -> list[str]:
    """Every violation of I1-I8, one line each (empty: all hold)."""
    problems: list[str] = []
    runs = runs_of(entries)
    acknowledged = set(expect.acknowledged)
    killed, drained, zombies = set(expect.killed), set(expect.drained), set(expect.zombies)
    every_dead = set().union(*(q.dead for q in state.queues.values()))

    for job_id in sorted(set(runs) - acknowledged):
        problems.append(f"I1 {job_id}: ran but was never enqueued by the test")
    for job_id in sorted(acknowledged):
        job = state.jobs.get(job_id)
        job_runs = runs.get(job_id, [])
        finished = [run for run in job_runs if run.end is not None]
        status = job.get("status") if job else None
        # I1: no loss
        if job_id in expect.dead:
            if status != "failed" or job_id not in every_dead:
                problems.append(f"I1 {job_id}: expected dead-lettered, is {status} (dead set: "
                                f"{job_id in every_dead})")  # fmt: skip
            elif expect.dead[job_id] not in (job or {}).get("error", ""):
                problems.append(f"I1 {job_id}: dead-letter reason lacks {expect.dead[job_id]!r}: "
                                f"{(job or {}).get('error')}")  # fmt: skip
        elif job is None:
            if not expect.results_expired:
                problems.append(f"I1 {job_id}: lost (no job hash; {len(job_runs)} runs)")
            elif not finished:
                problems.append(f"I1 {job_id}: expired without a run that ended")
        elif status != "succeeded" or "result" not in job:
            problems.append(f"I1 {job_id}: not succeeded but {status} ({len(job_runs)} runs)")
        elif not finished:
            problems.append(f"I1 {job_id}: stored as succeeded but no run ended in the ledger")
        # I2: duplicate bound
        # A run in a killed process explains one re-run even if it ended: the process may have
        # died before it stored the outcome. A drained run explains one only if it did not end.
        unfinished = [run for run in job_runs if run.end is None]
        explained = sum(1 for run in job_runs if run.pid in killed) + sum(
            1 for run in unfinished if run.pid in drained
        )
        if job_id in zombies:
            explained += 1  # the zombie's run
        bound = 1 + explained + expect.extra_starts
        if len(job_runs) > bound:
            problems.append(
                f"I2 {job_id}: started {len(job_runs)} times, bound {bound} "
                f"(runs: {[(r.pid, r.try_number, r.end is not None) for r in job_runs]})"
            )
        # I3: no concurrent owners
        if job_id not in zombies:
            for first, later in itertools.pairwise(job_runs):
                ended = first.end if first.end is not None else expect.stopped.get(first.pid)
                if ended is None or ended > later.start:
                    problems.append(
                        f"I3 {job_id}: run {first.pid}/try {first.try_number} (ended "
                        f"{ended}) overlaps run {later.pid}/try {later.try_number} (started "
                        f"{later.start})"
                    )
        if job is None:
            continue
        # I5: the stored result is that of a run that ended, under that run's token
        if status == "succeeded" and finished:
            token_pid = _worker_pid(job.get("token", ""))
            tries = int(job.get("tries", 0))
            owners = {(run.pid, run.try_number) for run in finished}
            if (token_pid, tries) not in owners:
                problems.append(f"I5 {job_id}: stored under pid {token_pid} try {tries}, which "
                                f"ended no run (ended: {sorted(owners)})")  # fmt: skip
            try:
                stored = json.loads(job["result"])
            except ValueError:
                stored = None
            if isinstance(stored, str) and stored.count("|") == 1:
                pid, _, try_number = stored.partition("|")
                if (int(pid), int(try_number)) != (token_pid, tries):
                    problems.append(f"I5 {job_id}: result {stored!r} is not the owner's "
                                    f"(pid {token_pid} try {tries})")  # fmt: skip
        # I6: accounting. A killed worker may also have claimed a job it never started, or ended one
        # without storing it: lost (and a try) beyond its unfinished runs, at most once per kill.
        lost = int(job.get("lost", 0))
        killed_unfinished = sum(1 for run in unfinished if run.pid in killed)
        if expect.lost is not None and job_id in expect.lost:
            if lost != expect.lost[job_id]:
                problems.append(f"I6 {job_id}: lost is {lost}, expected {expect.lost[job_id]}")
        elif job_id in zombies:
            if lost > len(job_runs) - 1:
                problems.append(f"I6 {job_id}: lost {lost} with only {len(job_runs)} runs")
        elif not killed_unfinished <= lost <= max(killed_unfinished, len(killed)):
            problems.append(
                f"I6 {job_id}: lost is {lost}, expected {killed_unfinished}"
                + (f" to {len(killed)}" if killed else "")
            )
        tries = int(job.get("tries", 0))
        if status == "succeeded" and tries > len(job_runs) + max(0, lost - killed_unfinished):
            problems.append(f"I6 {job_id}: tries {tries} but {len(job_runs)} runs, lost {lost}")

    succeeded = sum(1 for j in acknowledged if state.jobs.get(j, {}).get("status") == "succeeded")
    if expect.succeeded_metric is not None and expect.succeeded_metric != succeeded:
        problems.append(f"I6 metrics: {expect.succeeded_metric:g} succeeded counted, "
                        f"{succeeded} stored")  # fmt: skip

    # I4: nothing stuck
    for queue, keys in sorted(state.queues.items()):
        for kind in ("queued", "scheduled", "running"):
            if members := getattr(keys, kind):
                problems.append(f"I4 {queue}: {len(members)} jobs still {kind}: "
                                f"{sorted(members)[:5]}")  # fmt: skip
        for worker, owned in sorted(keys.owned.items()):
            if owned:
                problems.append(f"I4 {queue}: worker {worker} still owns {sorted(owned)[:5]}")
        if unexpected := keys.dead - set(expect.dead):
            problems.append(f"I4 {queue}: unexpected dead letters {sorted(unexpected)[:5]}")
        if expect.clean_exit and keys.workers:
            problems.append(f"I4 {queue}: heartbeats left after every worker left: "
                            f"{sorted(keys.workers)}")  # fmt: skip
        if keys.wake_length > 1:
            problems.append(f"I8 {queue}: wake list holds {keys.wake_length} markers")
    for job_id, job in sorted(state.jobs.items()):
        if job.get("status") not in TERMINAL:
            problems.append(f"I4 {job_id}: left in status {job.get('status')}")
    if missing_dead := set(expect.dead) - every_dead:
        problems.append(f"I4: expected dead letters missing: {sorted(missing_dead)[:5]}")

    # I7: every daemon alive or cleanly exited
    for name, code in sorted(expect.exits.items()):
        if code not in (0, None):
            problems.append(f"I7 {name}: exited with {code}")

    # I8: bounded keys
    prefix = state.prefix + ":"
    for name, ttl in sorted(state.ttls.items()):
        rest = name[len(prefix) :]
        if rest.startswith("{") and "}:" in rest:
            kind = rest.partition("}:")[2]
            if kind in FIXED_QUEUE_KEYS:
                continue
            if kind.startswith("job:") and kind[4:] in every_dead:
                continue
            if kind.startswith("job:") and expect.results_expired:
                problems.append(f"I8 {name}: still there after keep_result")
                continue
            if kind.startswith(("claim:", "stop:", "registry")) and expect.clean_exit:
                problems.append(f"I8 {name}: left by a worker that exited cleanly")
                continue
        elif rest == "epoch":
            continue  # one per prefix (jobd.ops.serverwatch)
        elif rest == "registry" or rest.startswith("registry:"):
            if expect.clean_exit:
                problems.append(f"I8 {name}: registry entry left after every worker left "
                                f"({sorted(state.registry)})")  # fmt: skip
            continue  # otherwise bounded: entries expire, the index drops them
        if ttl < 0:
            problems.append(f"I8 {name}: no TTL (leaked key)")
    return problems


def assert_invariants(entries: list[Entry], state: RedisState, expect: Expect) -> None:
    problems = check(entries, state, expect)
    if problems:
        shown = "\n".join(problems[:40])
        more = f"\n… and {len(problems) - 40} more" if len(problems) > 40 else ""
        raise AssertionError(f"{len(problems)} invariant violations:\n{shown}{more}")
