"""Job timeouts with one sweep instead of one timer per job.

A running job with a timeout registers its task and deadline; one task checks the registered jobs
every `TICK_SECONDS` and cancels those past their deadline, so a timeout fires up to a tick late.
`asyncio.timeout` around every job cost about 5 µs (a timer armed and disarmed, a context
manager) of a no-op job's ~150 µs; registering costs a set insert and removal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

TICK_SECONDS = 0.05


class Deadline:
    """One job's deadline; `expired` once the sweep cancelled its task for it."""

    __slots__ = ("_taken_back", "at", "expired", "task")

    def __init__(self, task: asyncio.Task[object], at: float) -> None:
        self.task = task
        self.at = at
        self.expired = False
        self._taken_back = False

    def take_back(self) -> int | None:
        """Take back the cancel the sweep made, once (as `asyncio.timeout` does on exit): the
        task's remaining cancel requests, or None if there is nothing to take back."""
        if not self.expired or self._taken_back:
            return None
        self._taken_back = True
        return self.task.uncancel()


class Deadlines:
    """The deadlines of running jobs, and the sweep that enforces them (running only while there
    are any)."""

    def __init__(
        self, tick: float = TICK_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tick = tick
        self._clock = clock
        self._active: set[Deadline] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def add(self, seconds: float) -> Deadline:
        """Cancel the current task `seconds` from now, unless `discard`ed first."""
        task = asyncio.current_task()
        assert task is not None, "a deadline belongs to a task"
        deadline = Deadline(task, self._clock() + seconds)
        self._active.add(deadline)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="jobd-deadlines"
            )
        return deadline

    def discard(self, deadline: Deadline) -> None:
        """The job is over: no cancel from now on, and one made already is taken back."""
        self._active.discard(deadline)
        deadline.take_back()

    def expire_due(self) -> None:
        """Cancel the tasks whose deadline has passed (what each tick of the sweep does)."""
        now = self._clock()
        for deadline in [entry for entry in self._active if entry.at <= now]:
            self._active.discard(deadline)
            deadline.expired = True
            deadline.task.cancel()

    async def _sweep(self) -> None:
        while self._active:
            await asyncio.sleep(self.tick)
            self.expire_due()
