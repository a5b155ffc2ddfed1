"""Faults of the workers themselves (docs/reliability.md §5.2): none (F1), kill -9 once (F2) and in a storm
(F3), a job that kills its worker (F4), SIGTERM drains (F5, F6), a worker paused past its lease
(F15), and a job that blocks the event loop (F16). Every scenario ends with the invariant checker."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.chaos.conftest import GUARD, LONG, Chaos, until
from tests.support.checker import Expect

CI_AND_LONG = pytest.mark.parametrize(
    "size", [pytest.param(1, id="ci"), pytest.param(10, id="long", marks=LONG)]
)
"""The CI size, and ten times more jobs for `-m chaos_long`."""


@CI_AND_LONG
def test_f1_baseline_every_job_runs_exactly_once(chaos: Chaos, size: int) -> None:
    chaos.start_redis()
    # results expire soon (for I8), but not before the test has seen every job end
    config = chaos.config(defaults={"keep_result": f"{3 * size}s"})
    workers = [chaos.daemon(config) for _ in range(3)]
    ids = chaos.enqueue(1000 * size, producers=4)
    chaos.wait_done(ids, guard=GUARD * size)
    succeeded = chaos.succeeded(workers, len(ids))
    lost = sum(chaos.metric(w, "jobd_jobs_finished_total", outcome="lost") for w in workers)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits, succeeded_metric=succeeded))
    assert lost == 0
    assert len(chaos.starts()) == len(ids)  # exactly once, not merely within a bound
    assert {e.pid for e in chaos.starts()} == {w.pid for w in workers}
    # I8 after keep_result: only the fixed per-queue keys remain
    with chaos.client() as conn:
        until(lambda: not list(conn.scan_iter(match=f"{chaos.prefix}:*job:*")), "results expired")
    chaos.check(Expect(ids, exits=exits, results_expired=True))


def test_f2_kill_9_mid_job_reruns_only_the_dead_workers_jobs(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config()
    a, b = chaos.daemon(config, name="a"), chaos.daemon(config, name="b")
    ids = chaos.enqueue(200, "chaos", 0.5)

    def running_on_a() -> int:
        ended = {(e.job_id, e.try_number) for e in chaos.entries() if e.event == "end"}
        return sum(1 for e in chaos.starts(a.pid) if (e.job_id, e.try_number) not in ended)

    until(lambda: running_on_a() >= 20, "20 jobs running on worker a")
    killed_at = chaos.kill(a)
    chaos.wait_done(ids)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, killed={a.pid}, stopped={a.pid: killed_at}, exits=exits))
    # every job a left unfinished ran again, once, on b, as try 2; and only jobs a had claimed
    # ran twice (a may also have claimed jobs it had not started, or ended ones not yet stored)
    entries = chaos.entries()
    ended = {(e.job_id, e.pid) for e in entries if e.event == "end"}
    interrupted = {e.job_id for e in entries if e.pid == a.pid and (e.job_id, a.pid) not in ended}
    assert interrupted
    second = [e for e in chaos.starts() if e.try_number == 2]
    assert interrupted <= {e.job_id for e in second}
    assert all(e.pid == b.pid for e in second)
    first_run = {e.job_id: e.pid for e in chaos.starts() if e.try_number == 1}
    assert all(first_run.get(e.job_id, a.pid) == a.pid for e in second)
    assert "its worker died; queued again" in b.log_text()


@CI_AND_LONG
def test_f3_crash_storm_converges_with_duplicates_only_from_kills(chaos: Chaos, size: int) -> None:
    chaos.start_redis()
    config = chaos.config(worker={"concurrency": 10, "max_lost": 100}, defaults={"max_tries": 100})
    fleet = [chaos.daemon(config) for _ in range(4)]
    ids = chaos.enqueue(400 * size, "chaos", 0.5)
    killed: dict[int, float] = {}
    seed = chaos.rng.randrange(2**32)
    rng = random.Random(seed)
    print(f"crash storm seed {seed}")
    deadline = time.monotonic() + GUARD * size
    while chaos.statuses(ids).count("succeeded") < len(ids) and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 2.0))  # the storm's rhythm: the fault schedule, not a wait
        victim = rng.randrange(len(fleet))
        killed[fleet[victim].pid] = chaos.kill(fleet[victim])
        fleet[victim] = chaos.daemon(config)
    chaos.wait_done(ids, guard=GUARD * size)
    assert len(killed) >= 3, f"only {len(killed)} kills happened (seed {seed})"
    exits = chaos.stop_all()
    chaos.check(Expect(ids, killed=set(killed), stopped=killed, exits=exits, clean_exit=False))


def test_f4_poison_pill_is_dead_lettered_after_max_lost(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config(worker={"max_lost": 3})
    fleet = [chaos.daemon(config) for _ in range(2)]
    ids = chaos.enqueue(100, "chaos")
    (poison,) = chaos.enqueue(1, "crash_now", start=1000)
    crashed: dict[int, float] = {}

    def restart_the_dead() -> None:
        for n, daemon in enumerate(fleet):
            if not daemon.running:
                crashed[daemon.pid] = time.time()
                assert daemon.wait_exit() == 137, daemon.log_text()
                fleet[n] = chaos.daemon(config)

    def poison_dead() -> bool:
        restart_the_dead()
        return chaos.statuses([poison]) == ["failed"]

    until(poison_dead, "the poison pill in the dead letters")
    chaos.wait_done(ids)
    # no crash loop afterwards: the same two workers run new jobs
    survivors = {d.pid for d in fleet}
    more = chaos.enqueue(20, "chaos", start=2000)
    chaos.wait_done(more)
    assert {d.pid for d in fleet if d.running} == survivors
    exits = chaos.stop_all()
    reason = "worker died 3 times while running this job"
    chaos.check(
        Expect([*ids, poison, *more], dead={poison: reason}, killed=set(crashed),
               stopped=crashed, exits=exits, clean_exit=False)
    )  # fmt: skip
    assert len(crashed) == 3
    assert [e.pid for e in chaos.starts() if e.job_id == poison] == list(crashed)


def test_f5_sigterm_drains_running_jobs_and_claims_nothing_more(chaos: Chaos) -> None:
    chaos.start_redis()
    worker = chaos.daemon(chaos.config(worker={"drain_timeout": "30s"}))
    ids = chaos.enqueue(50, "chaos", 1.0)
    until(lambda: len(chaos.starts()) == 50, "50 jobs running")
    backlog = chaos.enqueue(20, "chaos", start=100)  # queued: must not start after the signal
    signalled = time.time()
    worker.terminate()
    seen: list[int] = []

    def not_ready() -> bool:
        try:
            seen.append(worker.get("/readyz", timeout=2)[0])
        except OSError:
            return not worker.running
        return seen[-1] == 503

    until(not_ready, "/readyz 503 while draining")
    assert worker.wait_exit(GUARD) == 0
    assert 503 in seen
    late = [e for e in chaos.starts(worker.pid) if e.time > signalled]
    assert late == [], late
    assert chaos.statuses(backlog) == ["queued"] * len(backlog)
    second = chaos.daemon(chaos.config())
    chaos.wait_done(backlog)
    exits = {"drained": worker.returncode, **chaos.stop_all()}
    chaos.check(Expect([*ids, *backlog], exits=exits))
    assert second.returncode == 0


def test_f5_sigterm_while_claims_are_in_flight_charges_no_try(chaos: Chaos) -> None:
    """A drain that begins while a claim is in flight must not orphan what that claim took."""
    chaos.start_redis()
    config = chaos.config(worker={"concurrency": 4})
    first = chaos.daemon(config, name="first")
    ids = chaos.enqueue(1500, "chaos", producers=2)
    until(lambda: len(chaos.starts()) >= 300, "300 jobs started")
    first.terminate()
    assert first.wait_exit(GUARD) == 0
    chaos.daemon(config, name="second")
    chaos.wait_done(ids)
    exits = {"first": first.returncode, **chaos.stop_all()}
    chaos.check(Expect(ids, drained={first.pid}, exits=exits))


def test_f6_drain_timeout_requeues_without_charging_a_try(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config(worker={"drain_timeout": "0.5s"})
    first = chaos.daemon(config, name="first")
    ids = chaos.enqueue(5, "chaos", 3.0)
    until(lambda: len(chaos.starts()) == 5, "5 jobs running")
    first.terminate()
    assert first.wait_exit(GUARD) == 0
    stopped = time.time()
    assert chaos.statuses(ids) == ["queued"] * 5
    with chaos.client() as conn:
        assert [int(conn.hget(f"{chaos.prefix}:{{default}}:job:{i}", "tries")) for i in ids] == [
            0
        ] * 5
        assert conn.zcard(f"{chaos.prefix}:{{default}}:workers") == 0
        assert not list(conn.scan_iter(match=f"{chaos.prefix}:*owned:*"))
    second = chaos.daemon(config, name="second")
    chaos.wait_done(ids)
    exits = {"first": first.returncode, **chaos.stop_all()}
    chaos.check(Expect(ids, drained={first.pid}, stopped={first.pid: stopped}, exits=exits))
    for job_id in ids:
        runs = [(e.pid, e.try_number) for e in chaos.starts() if e.job_id == job_id]
        assert runs == [(first.pid, 1), (second.pid, 1)], runs


def test_f15_worker_paused_past_its_lease_cannot_store_over_the_new_owner(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config()
    a = chaos.daemon(config, name="a")
    ids = chaos.enqueue(4, "chaos", 1.5)
    until(lambda: len(chaos.starts(a.pid)) == 4, "4 jobs running on a")
    b = chaos.daemon(config, name="b")
    a.signal(signal.SIGSTOP)
    try:
        until(lambda: len(chaos.starts(b.pid)) == 4, "b runs a's jobs again")
    finally:
        a.signal(signal.SIGCONT)
    chaos.wait_done(ids)
    until(
        lambda: chaos.metric(a, "jobd_jobs_finished_total", outcome="lost") == 4, "a counts 4 lost"
    )
    exits = chaos.stop_all()
    chaos.check(Expect(ids, zombies=set(ids), lost=dict.fromkeys(ids, 1), exits=exits))
    assert "lease lost" in a.log_text()
    with chaos.client() as conn:
        results = [conn.hget(f"{chaos.prefix}:{{default}}:job:{i}", "result") for i in ids]
    assert all(r is not None and str(b.pid).encode() in r for r in results), results


def test_f16_a_job_blocking_the_event_loop_loses_its_lease_and_is_named(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config(http={"max_loop_lag": "1s"})
    a = chaos.daemon(config, name="a")
    # a plain def job sleeping past the lease runs in a thread: the heartbeat goes on, one run
    (threaded,) = chaos.enqueue(1, "sync_chaos", 3.0)
    until(lambda: len(chaos.starts(a.pid)) == 1, "the threaded job runs on a")
    b = chaos.daemon(config, name="b")
    chaos.wait_done([threaded])
    assert len(chaos.starts()) == 1
    # an async def job that blocks the loop past the lease: its lease is lost, c runs it again,
    # a's late result is refused; /healthz says so meanwhile and the log names the job. b leaves
    # first so that a claims it (a frozen b could still claim it: its wait and claim sit in Redis)
    b.terminate()
    assert b.wait_exit(GUARD) == 0
    (blocking,) = chaos.enqueue(1, "block_chaos", 4.0, start=1)
    until(lambda: len(chaos.starts(a.pid)) == 2, "the blocking job runs on a")
    c = chaos.daemon(config, name="c")
    statuses: list[int] = []
    until(lambda: statuses.append(a.get("/healthz")[0]) or statuses[-1] == 503, "a's /healthz 503")
    chaos.wait_done([blocking])
    until(lambda: "blocked the event loop" in a.log_text(), "the log names the blocking job")
    assert c.running
    exits = {"b": b.returncode, **chaos.stop_all()}
    chaos.check(Expect([threaded, blocking], zombies={blocking}, exits=exits))
    line = next(x for x in a.log_text().splitlines() if "blocked the event loop" in x)
    assert f"job {blocking} (block_chaos)" in line
    assert len([e for e in chaos.starts() if e.job_id == blocking]) in (1, 2)
