"""Job timeouts by one sweep (jobd.worker.deadlines): late tasks are cancelled, others are left alone."""

from __future__ import annotations

import asyncio

from jobd.worker.deadlines import Deadlines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_only_tasks_past_their_deadline_are_cancelled() -> None:
    clock = Clock()
    deadlines = Deadlines(tick=3600, clock=clock)  # the sweep's own timer stays out of the way
    started = asyncio.Event()
    registered: dict[str, object] = {}

    async def job(name: str, seconds: float) -> str:
        registered[name] = deadlines.add(seconds)
        started.set()
        await asyncio.Event().wait()
        return name

    short = asyncio.create_task(job("short", 1.0))
    long = asyncio.create_task(job("long", 5.0))
    await asyncio.sleep(0)
    clock.now += 0.999
    deadlines.expire_due()
    await asyncio.sleep(0)
    assert not short.done() and not long.done()
    clock.now += 0.001
    deadlines.expire_due()
    await asyncio.sleep(0)
    assert short.cancelled() and not long.done()
    assert registered["short"].expired and not registered["long"].expired  # type: ignore[attr-defined]
    long.cancel()


async def test_a_discarded_deadline_never_fires() -> None:
    clock = Clock()
    deadlines = Deadlines(tick=3600, clock=clock)

    async def job() -> str:
        deadline = deadlines.add(1.0)
        deadlines.discard(deadline)
        clock.now += 10
        deadlines.expire_due()
        await asyncio.sleep(0)
        return "done"

    assert await job() == "done"


async def test_the_sweep_cancels_on_its_own_and_ends_when_nothing_is_left() -> None:
    deadlines = Deadlines(tick=0.01)

    async def job() -> None:
        deadlines.add(0.02)
        await asyncio.Event().wait()

    task = asyncio.create_task(job())
    done, _ = await asyncio.wait([task], timeout=10)
    assert task in done and task.cancelled()
    sweeper = deadlines._sweeper
    assert sweeper is not None
    await asyncio.wait_for(sweeper, 10)  # no deadlines left: the sweep returns
