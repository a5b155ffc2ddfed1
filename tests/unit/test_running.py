"""RunningJobs, the worker's slots: a run holds its slot while its function runs, and gives it back
when the function returns, while its outcome is still being stored (the fetcher's next claim then
overlaps that finish). No more runs than slots store their outcome without one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from jobd.worker.runner import ClaimedJob
from jobd.worker.running import RunningJob, RunningJobs


def job(job_id: str) -> ClaimedJob:
    return ClaimedJob(
        id=job_id, queue="default", token="t", function="f", payload=b"[[],{}]", tries=1, lost=0,
        max_tries=None, timeout=None, enqueued_at=datetime.now(UTC), priority=0,
    )  # fmt: skip


class Runs:
    """Handlers whose function returns when `returned` is set and whose outcome is stored when
    `stored` is set: the two moments a slot can be given back."""

    def __init__(self, running: RunningJobs) -> None:
        self.running = running
        self.returned = asyncio.Event()
        self.stored = asyncio.Event()
        self.storing: list[str] = []

    async def handle(self, entry: RunningJob, _claimed_at_ms: int) -> None:
        await self.returned.wait()
        self.running.end(entry)
        self.storing.append(entry.job.id)
        await self.stored.wait()


async def wait_for_storing(runs: Runs, count: int) -> None:
    while len(runs.storing) < count:
        runs.running.slot_freed.clear()
        await runs.running.slot_freed.wait()


async def test_a_run_storing_its_outcome_gives_its_slot_back() -> None:
    running = RunningJobs(2)
    runs = Runs(running)
    running.start(job("a"), runs.handle, 0)
    running.start(job("b"), runs.handle, 0)
    assert (len(running), running.busy) == (2, 2)

    runs.returned.set()
    await wait_for_storing(runs, 2)
    assert (len(running), running.busy) == (2, 0)  # both jobs are still this worker's
    assert running.cancel("default", "a", "abort") is False  # an ended run is never cancelled

    runs.stored.set()
    await asyncio.gather(*running.tasks())  # _release, a done callback added first, has run
    assert (len(running), running.busy, running.storing, running.processed) == (0, 0, 0, 2)


async def test_no_more_runs_than_slots_store_without_one() -> None:
    running = RunningJobs(1)
    runs = Runs(running)
    runs.returned.set()
    running.start(job("a"), runs.handle, 0)
    await wait_for_storing(runs, 1)
    assert running.busy == 0
    running.start(job("b"), runs.handle, 0)
    await wait_for_storing(runs, 2)
    # two runs store their outcome, one without a slot: the worker holds at most twice its slots
    assert (len(running), running.storing, running.busy) == (2, 2, 1)

    runs.stored.set()
    await asyncio.gather(*running.tasks())
    assert (len(running), running.busy, running.storing) == (0, 0, 0)
