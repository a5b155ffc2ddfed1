"""Fetching: the loop that claims jobs for a worker within its concurrency, and its waits for work.

An idle worker of one queue blocks on the queue's wake marker and claims in the same round trip
(Store.wait_and_claim). With several queues, one waker per queue blocks on its marker and wakes
the loop, which then claims from every queue in order (the first queue first).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio

from jobd.worker.context import WorkerContext
from jobd.worker.handler import JobHandler
from jobd.worker.store import Claim

logger = logging.getLogger("jobd.worker")

IDLE_WAIT_SECONDS = 1.0
"""Longest blocking wait on a wake marker: well below the socket timeout (docs/reliability.md, finding 3).
Pickup does not depend on it: enqueue pushes the marker that ends the wait at once."""

WAIT_CLAIM_LIMIT = 1
"""Jobs the claim pipelined with a blocking wait takes at most. That claim runs in Redis as soon
as a marker arrives, even if this process is frozen (SIGSTOP, a paused container): what it takes
then waits for the process to resume, or for its lease to end. One job is enough for an idle
worker's latency; the fetch loop claims the rest at once."""

REDIS_TIMEOUT_SLACK = 0.1
"""Redis ends a blocking wait at its first server tick after the timeout (`hz` 10, its default:
up to 100 ms late). A wait that must end at a due time (a scheduled job, a limit that frees)
therefore blocks in Redis that much shorter, and the rest is slept on the event loop's clock: a
limited queue then starts its jobs when the limit frees, not up to 100 ms after."""

CLAIM_GRACE_SECONDS = 5.0
"""Longest wait on SIGTERM for a claim in flight (it normally takes a millisecond)."""


class Fetcher:
    """Claims jobs within the worker's concurrency and starts each with `handler` until `stop` is
    set (in burst mode: until the queues are empty)."""

    def __init__(
        self,
        context: WorkerContext,
        *,
        handler: JobHandler,
        wake_client: redis.asyncio.Redis,
        stop: asyncio.Event,
        burst: bool = False,
    ) -> None:
        self.settings = context.settings.worker
        self.call = context.call
        self.store = context.store
        self.running = context.running
        self.redis_health = context.redis_health
        self.handler = handler
        self.stop_event = stop
        self.burst = burst
        self.wake_client = wake_client
        """The client of the blocking waits, apart from the hot path's connections."""
        self.work = asyncio.Event()
        self.idle = asyncio.Event()
        self.next_due: dict[str, float] = {}
        self.claiming = False
        self.waiting = False
        """The loop blocks in Store.wait_and_claim."""

    @property
    def pipelined_waits(self) -> bool:
        """An idle worker of one queue waits and claims in one round trip (Store.wait_and_claim);
        with several queues, one waker per queue blocks and the fetch loop then claims from each
        in order. Burst mode ends when its jobs are done, which a blocking wait would delay."""
        return len(self.settings.queues) == 1 and not self.burst

    async def run(self) -> None:
        concurrency = self.settings.concurrency
        queues = self.settings.queues
        while not self.stop_event.is_set():
            if self.running.busy >= concurrency:
                self.running.slot_freed.clear()
                await self.running.slot_freed.wait()
                continue
            self.work.clear()
            full_batch = False
            for queue in queues:
                free = concurrency - self.running.busy
                if free <= 0 or self.stop_event.is_set():
                    break
                claim = await self._claim(functools.partial(self.store.claim, queue, free))
                full_batch = self._take(queue, claim, free) or full_batch
            if full_batch:
                await asyncio.sleep(0)  # let the new jobs start before claiming more
                continue
            if self.burst and not self.running and not any(self.next_due.values()):
                logger.info("burst: queues are empty, stopping")
                return
            if self.stop_event.is_set():
                break
            if self.pipelined_waits:
                await self._wait_and_claim(queues[0])
            else:
                await self._wait_for_work()

    async def _claim(self, call: Callable[[], Awaitable[Claim]]) -> Claim:
        self.claiming = True
        try:
            return await self.call("claim", call, keep_trying=True)
        finally:
            self.claiming = False

    def _take(self, queue: str, claim: Claim, free: int) -> bool:
        """Start the claimed jobs; True if the claim took all it was asked for (more may wait)."""
        self.handler.reports.claim(queue, claim)
        for job in claim.jobs:
            self.running.start(job, self.handler.handle, claim.now_ms)
        due = claim.next_due_ms
        self.next_due[queue] = (
            time.monotonic() + (due - claim.now_ms) / 1000 if due is not None else 0.0
        )
        return len(claim.jobs) == free

    def _wait_timeout(self) -> float:
        """How long an idle worker may block: until the next scheduled job is due, at most
        IDLE_WAIT_SECONDS."""
        timeout = IDLE_WAIT_SECONDS
        now = time.monotonic()
        for due in self.next_due.values():
            if due:
                timeout = min(timeout, max(due - now, 0.0))
        return timeout

    async def _wait_and_claim(self, queue: str) -> None:
        """Wait for work and claim it in one round trip, until a claim brings a job (the fetch
        loop then claims on) or a scheduled job is due."""
        while not self.stop_event.is_set():
            timeout = self._wait_timeout()
            free = self.settings.concurrency - self.running.busy
            if timeout <= 0 or free <= 0:
                return
            if timeout < IDLE_WAIT_SECONDS:  # a due time ends this wait
                if timeout <= REDIS_TIMEOUT_SLACK:
                    await asyncio.sleep(timeout)
                    return
                timeout -= REDIS_TIMEOUT_SLACK
            free = min(free, WAIT_CLAIM_LIMIT)
            self.waiting = True
            try:
                claim = await self._claim(
                    functools.partial(
                        self.store.wait_and_claim, self.wake_client, queue, free, timeout
                    )
                )
            finally:
                self.waiting = False
            if self._take(queue, claim, free):
                await asyncio.sleep(0)  # the job starts before the loop claims more
                return

    async def stop(self, fetcher: asyncio.Task[None]) -> None:
        """End the fetch loop, but not in the middle of a claim: the jobs a claim took belong to
        this worker, and a reply dropped by the cancellation would leave them owned by nobody who
        knows (the reaper would give them back as lost, charging a try). Those jobs are drained
        like the others. A blocking wait is ended first, and its claim then takes nothing. A
        claim stuck in a Redis outage is not waited for."""
        if self.claiming and self.redis_health.available:
            if self.waiting:
                await self._end_wait()
            await asyncio.wait([fetcher], timeout=CLAIM_GRACE_SECONDS)
        fetcher.cancel()

    async def _end_wait(self) -> None:
        queue = self.settings.queues[0]
        try:
            await self.call(
                "stop waiting",
                functools.partial(self.store.stop_waiting, queue),
                deadline=time.monotonic() + CLAIM_GRACE_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 - the wait then ends at its timeout
            logger.warning("could not end the wait for work on queue %s: %s", queue, error)

    async def _wait_for_work(self) -> None:
        timeout = self._wait_timeout()
        if timeout <= 0:
            return
        self.idle.set()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(timeout):
                await self.work.wait()
        except TimeoutError:
            pass
        finally:
            self.idle.clear()

    async def waker(self, queue: str) -> None:
        """Blocks on the queue's wake marker while the worker is idle. The wakers of all queues
        share one client (each blocking call takes a connection of its own from its pool): one
        cluster client learns the slot map once, not once per queue."""
        while not self.stop_event.is_set():
            await self.idle.wait()
            if self.stop_event.is_set():
                break
            woken = await self.call(
                "wait",
                functools.partial(
                    self.store.wait_for_work, self.wake_client, queue, IDLE_WAIT_SECONDS
                ),
                keep_trying=True,
            )
            if woken:
                self.work.set()
