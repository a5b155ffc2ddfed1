"""Keeping a worker's leases: the heartbeat (renew, reap, registry, systemd status) and the
listener for abort requests. Cancels runs whose lease is lost or whose abort was asked for."""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING

import redis.asyncio

from jobd.health import wait_for
from jobd.store import Renewal

if TYPE_CHECKING:
    from jobd.worker import Worker

logger = logging.getLogger("jobd.worker")

ABORT_POLL_SECONDS = 1.0
"""Longest wait for a pub/sub message before checking whether the worker has finished."""


class LeaseKeeper:
    """The heartbeat and abort loops of one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def heartbeat_once(self) -> None:
        worker = self.worker.settings.worker
        until_ms = round((time.time() + 3 * worker.lease_timeout) * 1000)
        for queue in worker.queues:
            renewal = await self.worker.call(
                "renew", functools.partial(self._renew, queue), keep_trying=True
            )
            for job_id, token in renewal.lost:
                if self.worker.cancel(queue, job_id, "lost", token=token):
                    logger.warning(
                        "job %s: lease lost (another worker owns it now); cancelled", job_id
                    )
            for job_id in renewal.aborts:
                self.worker.cancel(queue, job_id, "abort")
            for job_id in renewal.released:
                logger.warning(
                    "job %s: claimed but never received (lost reply); queued again", job_id
                )
            await self.worker.call(
                "publish functions",
                functools.partial(
                    self.worker.store.publish_functions, queue, self.worker.functions, until_ms
                ),
                keep_trying=True,
            )
            reaped = await self.worker.call(
                "reap",
                functools.partial(self.worker.store.reap, queue, worker.max_lost),
                keep_trying=True,
            )
            self.worker.handler.report_reaped(queue, reaped)
        await self.worker.call(
            "registry",
            functools.partial(self.worker.monitor.publish, worker.lease_timeout / 3),
            keep_trying=True,
        )
        self.worker.notifier.status(self.worker.status_line())

    async def _renew(self, queue: str) -> Renewal:
        """Renew with the jobs running now: a retried call must not send a list from before an
        outage (a job claimed since would look like an orphan and run twice)."""
        jobs = [entry.job for (q, _, _), entry in list(self.worker.running.items()) if q == queue]
        return await self.worker.store.renew(queue, jobs)

    async def heartbeat_loop(self) -> None:
        interval = self.worker.settings.worker.lease_timeout / 3
        while not self.worker.finished.is_set():
            if not await wait_for(self.worker.finished, interval):
                await self.heartbeat_once()

    async def abort_listener(self) -> None:
        """Cancels running jobs whose abort was requested (pub/sub; the heartbeat is the fallback)."""
        channels = {
            self.worker.store.keys(queue).aborts: queue
            for queue in self.worker.settings.worker.queues
        }
        while not self.worker.finished.is_set():
            pubsub = self.worker.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                while not self.worker.finished.is_set():
                    message = await pubsub.get_message(timeout=ABORT_POLL_SECONDS)
                    if message is not None:
                        queue = channels[message["channel"].decode()]
                        self.worker.cancel(queue, message["data"].decode(), "abort")
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as error:
                self.worker.redis_health.failed("abort listener", error)
                await wait_for(self.worker.finished, 1.0)  # reconnect backoff
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
