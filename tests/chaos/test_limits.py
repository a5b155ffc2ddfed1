"""Limits under faults (docs/limits.md): a worker killed with SIGKILL while its jobs hold the
slots of a fleet-wide concurrency limit (its slots go back when the reaper gives its jobs back),
and Redis killed, restarted and paused under limited jobs. No job is lost, and the limit is never
exceeded, counting a dead worker's runs until its death. Each ends with the invariant checker,
as every chaos scenario does."""

from __future__ import annotations

import time

from tests.chaos.conftest import LEASE, Chaos, until
from tests.chaos.test_redis_faults import AOF_EVERY_WRITE
from tests.support.checker import Entry, Expect

LIMIT = 5


def most_at_once(entries: list[Entry], stopped: dict[int, float]) -> int:
    """Runs open at once, by the ledger's clock; a killed process's open runs end at its death."""
    events: list[tuple[float, int]] = []
    ended = {(e.job_id, e.try_number, e.pid) for e in entries if e.event == "end"}
    for entry in entries:
        if entry.event == "start":
            events.append((entry.time, 1))
            if (entry.job_id, entry.try_number, entry.pid) not in ended:
                events.append((stopped[entry.pid], -1))
        elif entry.event == "end":
            events.append((entry.time, -1))
    running = top = 0
    for _, step in sorted(events):
        running += step
        top = max(top, running)
    return top


def test_a_killed_workers_slots_come_back_and_the_limit_holds(chaos: Chaos) -> None:
    chaos.start_redis()
    config = chaos.config(
        limits={"api": {"concurrency": LIMIT}},
        functions={"chaos": {"path": "tests.jobs_for_tests:chaos", "limits": ["api"]}},
    )
    a, b = chaos.daemon(config, name="a"), chaos.daemon(config, name="b")
    ids = chaos.enqueue(60, "chaos", 0.2)

    def running_on_a() -> int:
        ended = {(e.job_id, e.try_number) for e in chaos.entries() if e.event == "end"}
        return sum(1 for e in chaos.starts(a.pid) if (e.job_id, e.try_number) not in ended)

    until(lambda: running_on_a() >= 2, "jobs holding the limit on worker a")
    killed_at = chaos.kill(a)
    chaos.wait_done(ids)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, killed={a.pid}, stopped={a.pid: killed_at}, exits=exits))
    entries = chaos.entries()
    assert most_at_once(entries, {a.pid: killed_at}) <= LIMIT
    assert any(e.pid == a.pid for e in entries) and any(e.pid == b.pid for e in entries)
    with chaos.client() as connection:
        slots = connection.zcard(f"{chaos.prefix}:{{default}}:limit:api:running")
        held = connection.zcard(f"{chaos.prefix}:{{default}}:limit:api:held")
    assert (slots, held) == (0, 0)  # every slot went back, nothing is left waiting


def test_limits_hold_through_a_redis_restart_and_a_pause(chaos: Chaos) -> None:
    """Redis killed and restarted with AOF, then paused past the lease, while limited jobs run:
    the limits' state is Redis data like the jobs', so nothing is lost, nothing runs twice, the
    concurrency is never exceeded and every slot comes back."""
    server = chaos.start_redis(**AOF_EVERY_WRITE)
    config = chaos.config(
        limits={"api": {"concurrency": LIMIT, "rate": "400/s"}},
        functions={"chaos": {"path": "tests.jobs_for_tests:chaos", "limits": ["api"]}},
    )
    workers = [chaos.daemon(config) for _ in range(2)]
    ids = chaos.enqueue(150, "chaos", 0.05)
    until(lambda: len(chaos.starts()) >= 20, "20 limited jobs started")
    server.kill()
    time.sleep(1.0)  # the outage's length: the fault, not a wait for a result
    server.restart()
    until(lambda: len(chaos.starts()) >= 60, "60 limited jobs started")
    server.pause()
    time.sleep(2 * LEASE)  # a pause past the lease: the fault itself
    server.resume()
    chaos.wait_done(ids)
    assert all(worker.running for worker in workers)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits))
    assert most_at_once(chaos.entries(), {}) <= LIMIT
    with chaos.client() as connection:
        slots = connection.zcard(f"{chaos.prefix}:{{default}}:limit:api:running")
        held = connection.zcard(f"{chaos.prefix}:{{default}}:limit:api:held")
    assert (slots, held) == (0, 0)
