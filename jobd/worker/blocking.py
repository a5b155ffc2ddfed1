"""Naming the job that blocked the event loop: an `async def` job that calls blocking code (time.sleep,
a synchronous HTTP client) stops heartbeats and every other job of the worker.

A timer on the loop stamps the time every quarter of the threshold, and a daemon thread looks at
the stamp as often. A stamp older than the threshold means the loop is stuck in one step of some
task: the thread notes the task the loop is running and the job it belongs to. When the loop moves
again, its next tick logs that job with how long the loop was held. Nothing runs per job or per
step: the first version of this timed every step of every job, 3-5 % of a no-op job's cost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from jobd.worker.runner import ClaimedJob

logger = logging.getLogger("jobd.jobs")

JobOf = Callable[["asyncio.Task[Any]"], ClaimedJob | None]
"""The job a task runs, if it runs one."""


def _report(job: ClaimedJob, seconds: float) -> None:
    logger.warning(
        "job %s (%s) blocked the event loop for %.1fs: heartbeats and other jobs waited meanwhile "
        "(make it a plain def, or move the blocking call into await asyncio.to_thread(...))",
        job.id, job.function, seconds,
        extra={"event": "loop_blocked", "job_id": job.id, "function": job.function,
               "queue": job.queue, "duration": seconds},
    )  # fmt: skip


class BlockWatch:
    """Reports jobs that hold the event loop for longer than `threshold` seconds (see the module
    docstring). A block shorter than the threshold plus a quarter of it may go unseen; a job seen
    blocking is named once, with the time the loop's timer was late (accurate to that quarter)."""

    def __init__(
        self, threshold: float, job_of: JobOf, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.interval = threshold / 4
        self._job_of = job_of
        self._clock = clock
        self._stamp = clock()
        # (the stamp the loop was stuck behind, its job): written by the thread, read by the loop
        self._suspect: tuple[float, ClaimedJob] | None = None
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start watching the running loop."""
        self._loop = asyncio.get_running_loop()
        self._stamp = self._clock()
        self._timer = self._loop.call_later(self.interval, self._tick)
        threading.Thread(target=self._watch, name="jobd-blockwatch", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._clock()
        suspect = self._suspect
        if suspect is not None and suspect[0] == self._stamp:
            self._suspect = None
            _report(suspect[1], max(0.0, now - self._stamp - self.interval))
        self._stamp = now
        self._timer = self._loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval):
            stamp = self._stamp
            if self._clock() - stamp <= self.threshold:
                continue
            suspect = self._suspect
            if suspect is not None and suspect[0] == stamp:
                continue  # this block's job is known
            task = asyncio.current_task(self._loop)
            job = self._job_of(task) if task is not None else None
            if job is not None:
                self._suspect = (stamp, job)
