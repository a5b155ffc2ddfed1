"""Keeping a worker's leases: the heartbeat (renew, reap, registry, systemd status) and the
listener for abort requests. Cancels runs whose lease is lost or whose abort was asked for."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection

import redis.asyncio

from jobd.errors import RedisAuthError
from jobd.ops.health import wait_for
from jobd.redis.auth import auth_message, is_auth_error
from jobd.redis.connect import connection_options, discover, open_async
from jobd.worker.context import WorkerContext
from jobd.worker.store import Reaped, Renewal

logger = logging.getLogger("jobd.worker")

ABORT_POLL_SECONDS = 1.0
"""Longest wait for a pub/sub message before checking whether the worker has finished."""


class LeaseKeeper:
    """The heartbeat and abort loops of one worker."""

    def __init__(
        self,
        context: WorkerContext,
        *,
        functions: Collection[str],
        report_reaped: Callable[[str, Reaped], None],
        publish_entry: Callable[[float], Awaitable[None]],
        on_heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        """`functions`: the names this worker runs, told to strict producers at every heartbeat;
        `report_reaped`: logs and counts what the reaper did (JobHandler.report_reaped);
        `publish_entry`: refreshes the worker's registry entry (Monitor.publish);
        `on_heartbeat`: called after each heartbeat's chores (the systemd status line)."""
        self.context = context
        self.settings = context.settings.worker
        self.call = context.call
        self.store = context.store
        self.running = context.running
        self.finished = context.finished
        self.functions = functions
        self.report_reaped = report_reaped
        self.publish_entry = publish_entry
        self.on_heartbeat = on_heartbeat
        self._chores_failing = False
        settings = context.settings.redis
        self.client = open_async(
            settings.url, **connection_options(settings.socket_timeout, settings.connect_timeout)
        )
        """Renewals go over a connection of their own, never queued behind the worker's other calls
        or a new pooled connection's handshake (found by tests/chaos F25: with a 400 ms round trip,
        a renewal that waited for a new connection arrived after the lease had expired)."""

    async def close(self) -> None:
        await self.client.aclose()

    async def heartbeat_once(self) -> None:
        """The first heartbeat: the chores, then the renewal, so that the renewal loop starts
        right after it however slow Redis is."""
        await self.chores()
        await self.renew()

    async def renew(self) -> None:
        """Extend the lease of this worker's jobs in every queue; cancel the runs it lost."""
        for queue in self.settings.queues:
            renewal = await self.call(
                "renew", functools.partial(self._renew, queue), keep_trying=True
            )
            for job_id, token in renewal.lost:
                if self.running.cancel(queue, job_id, "lost", token=token):
                    logger.warning(
                        "job %s: lease lost (another worker owns it now); cancelled", job_id
                    )
            for job_id in renewal.aborts:
                self.running.cancel(queue, job_id, "abort")
            for job_id in renewal.released:
                logger.warning(
                    "job %s: claimed but never received (lost reply); queued again", job_id
                )

    async def chores(self) -> None:
        """What the heartbeat does besides renewing: reap dead workers' jobs, then, as best effort,
        tell strict producers our functions and refresh the registry entry (both plain writes that
        a Redis at maxmemory refuses: they must never hold up the next renewal)."""
        worker = self.settings
        for queue in worker.queues:
            reaped = await self.call(
                "reap",
                functools.partial(self.store.reap, queue, worker.max_lost),
                keep_trying=True,
            )
            self.report_reaped(queue, reaped)
        until_ms = round((time.time() + 3 * worker.lease_timeout) * 1000)
        try:
            for queue in worker.queues:
                await self.store.publish_functions(queue, self.functions, until_ms)
            await self.publish_entry(worker.lease_timeout / 3)
        except (redis.exceptions.RedisError, OSError) as error:
            if is_auth_error(error):
                raise RedisAuthError(auth_message(self.call.url_text, error)) from error
            if not self._chores_failing:
                logger.warning("could not publish this worker's functions and registry entry "
                               "(%s: %s); retrying at every heartbeat", type(error).__name__,
                               error)  # fmt: skip
            self._chores_failing = True
        else:
            self._chores_failing = False
        self.on_heartbeat()

    async def _renew(self, queue: str) -> Renewal:
        """Renew with the jobs running now: a retried call must not send a list from before an
        outage (a job claimed since would look like an orphan and run twice)."""
        return await self.store.renew(queue, self.running.jobs_in(queue), self.client)

    async def heartbeat_loop(self) -> None:
        """Renew every lease_timeout / 3, whatever else is slow: reaping and the chores run in a
        loop of their own (found by tests/chaos F25: with a 200 ms Redis, a heartbeat that also
        reaped and published took longer than the lease, and leases of live workers expired)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(self.renew))
            group.create_task(self._every(self.chores))

    async def _every(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` every lease_timeout / 3, measured from the start of the previous run."""
        interval = self.settings.lease_timeout / 3
        due = time.monotonic() + interval
        while not await wait_for(self.finished, max(0.0, due - time.monotonic())):
            due = time.monotonic() + interval
            await step()

    def _channels(self) -> dict[str, str]:
        return {self.store.keys(queue).aborts: queue for queue in self.settings.queues}

    async def check_channels(self) -> None:
        """Subscribe once before taking jobs: an ACL user without pub/sub rights (the default for
        new users in Redis 7) then stops the worker at startup with exit 78, not half-way."""
        await discover(self.context.redis)
        pubsub = self.context.redis.pubsub()
        try:
            await pubsub.subscribe(*self._channels())
            await pubsub.get_message(timeout=ABORT_POLL_SECONDS)  # the reply, or the NOPERM error
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def abort_listener(self) -> None:
        """Cancels running jobs whose abort was requested (pub/sub; the heartbeat is the fallback)."""
        channels = self._channels()
        while not self.finished.is_set():
            pubsub = self.context.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await discover(self.context.redis)
                await pubsub.subscribe(*channels)
                while not self.finished.is_set():
                    message = await pubsub.get_message(timeout=ABORT_POLL_SECONDS)
                    if message is not None:
                        queue = channels[message["channel"].decode()]
                        # anyone may publish here: bytes that are no job id match no job
                        job_id = message["data"].decode(errors="replace")
                        self.running.cancel(queue, job_id, "abort")
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as error:
                self.context.redis_health.failed("abort listener", error)
                await wait_for(self.finished, 1.0)  # reconnect backoff
            except redis.exceptions.ResponseError as error:
                if is_auth_error(error):  # ACL changed under a running worker
                    raise RedisAuthError(auth_message(self.call.url_text, error)) from error
                raise
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
