"""The jobs one worker runs now: their tasks, the free slots, and cancelling a run with a reason."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from jobd.worker.runner import ClaimedJob

RunKey = tuple[str, str, str]
"""(queue, job id, lease token): a job reaped from this worker and claimed by it again is a new
run, and the stale one must not be mistaken for it."""


@dataclass(slots=True)
class RunningJob:
    """One run of a job on this worker."""

    job: ClaimedJob
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    """Why the worker cancelled it: 'drain', 'abort' or 'lost'."""
    ended: bool = False
    """The function has returned and its outcome is being stored: never cancelled any more (a
    heartbeat that finds the job no longer running is seeing that outcome; the finish is fenced)."""


Handle = Callable[[RunningJob, int], Coroutine[Any, Any, None]]
"""What runs a claimed job to its stored outcome (JobHandler.handle), given the claim's time."""


class RunningJobs:
    """The runs of this worker, each an asyncio task that frees its slot when its function returns."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """The worker's concurrency."""
        self.entries: dict[RunKey, RunningJob] = {}
        self.processed = 0
        """Runs that ended since the worker started."""
        self.storing = 0
        """Runs whose function has returned and whose outcome is being stored."""
        self.slot_freed = asyncio.Event()
        """Set whenever a run's function returns or its run ends: the fetcher waits on it when
        every slot is taken."""

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def busy(self) -> int:
        """The slots taken, which the worker's concurrency bounds: a run holds its slot while its
        function runs, not while its outcome is being stored, so that the next job's claim
        overlaps this one's finish. At most as many runs as slots are storing at once without a
        slot: a worker holds at most twice its concurrency in jobs when Redis is slow."""
        return len(self.entries) - min(self.storing, self.limit)

    def start(self, job: ClaimedJob, handle: Handle, claimed_at_ms: int) -> RunningJob:
        """Run `handle` for `job` in a task of its own."""
        entry = RunningJob(job)
        key = (job.queue, job.id, job.token)
        self.entries[key] = entry
        entry.task = asyncio.create_task(handle(entry, claimed_at_ms), name=f"job:{job.id}")
        entry.task.add_done_callback(functools.partial(self._release, key))
        return entry

    def end(self, entry: RunningJob) -> None:
        """`entry`'s function has returned: it is never cancelled any more, and its slot is free
        while its outcome is stored."""
        if not entry.ended:
            entry.ended = True
            self.storing += 1
            self.slot_freed.set()

    def _release(self, key: RunKey, _task: object = None) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None and entry.ended:
            self.storing -= 1
        self.processed += 1
        self.slot_freed.set()

    def jobs_in(self, queue: str) -> list[ClaimedJob]:
        """The jobs running now from `queue` (a copy: the heartbeat reads it between awaits)."""
        return [entry.job for (q, _, _), entry in list(self.entries.items()) if q == queue]

    def tasks(self) -> list[asyncio.Task[None]]:
        return [entry.task for entry in self.entries.values() if entry.task is not None]

    def job_of(self, task: asyncio.Task[Any]) -> ClaimedJob | None:
        """The job `task` runs (called from BlockWatch's thread while the loop is stuck: list()
        copies the values without letting the loop's thread in)."""
        for entry in list(self.entries.values()):
            if entry.task is task:
                return entry.job
        return None

    def cancel(self, queue: str, job_id: str, reason: str, token: str | None = None) -> bool:
        """Cancel the runs of a job (only the one under `token`, if given); the handler acts on
        `reason`. Returns True if a run was cancelled."""
        cancelled = False
        for (entry_queue, entry_id, entry_token), entry in list(self.entries.items()):
            if entry_queue != queue or entry_id != job_id or token not in (None, entry_token):
                continue
            if entry.task is None or entry.cancel_reason is not None or entry.ended:
                continue
            entry.cancel_reason = reason
            entry.task.cancel()
            cancelled = True
        return cancelled

    def cancel_all(self, reason: str) -> None:
        for queue, job_id, token in list(self.entries):
            self.cancel(queue, job_id, reason, token=token)
