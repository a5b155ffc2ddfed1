"""Limits under faults (docs/limits.md): a worker killed with SIGKILL while its jobs hold the
slots of a fleet-wide concurrency limit. Its slots go back when the reaper gives its jobs back;
no job is lost, and the limit is never exceeded, counting a dead worker's runs until its death.
Ends with the invariant checker, as every chaos scenario does."""

from __future__ import annotations

from tests.chaos.conftest import Chaos, until
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
