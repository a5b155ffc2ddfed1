"""A worker's background observation: probing Redis (readiness), refreshing queue figures for the
metrics (never inside a scrape), and publishing this worker in the registry that `jobd status` reads."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import redis.asyncio

from jobd import __version__
from jobd.config.limits import owner_queue
from jobd.ops.health import wait_for
from jobd.ops.serverwatch import ServerWatch
from jobd.redis.connect import connection_options, open_async
from jobd.redis.keys import RegistryKeys, member_text
from jobd.worker.context import WorkerContext
from jobd.worker.limits import published_limits
from jobd.worker.stats import OutcomeCounts

logger = logging.getLogger("jobd.monitor")

PROBE_INTERVAL = 1.0
"""Seconds between readiness pings: a paused Redis shows in /readyz within about two of them."""
PROBE_TIMEOUT = 2.0
STATS_INTERVAL = 5.0
"""Seconds between refreshes of the queue depth metrics."""


class Monitor:
    """The observation loops of one worker."""

    def __init__(self, context: WorkerContext, *, outcomes: OutcomeCounts) -> None:
        """`outcomes`: the handler's counts, added to Redis's minute buckets with each refresh."""
        self.context = context
        self.outcomes = outcomes
        self.settings = context.settings
        self.finished = context.finished
        self.started_at_ms = round(time.time() * 1000)
        self.registry = RegistryKeys(context.settings.redis.key_prefix)
        self.limits = published_limits(context.settings)
        """The limits this worker enforces, told to producers (Client.limit) with its entry."""
        self.server = ServerWatch(
            context.settings.redis.key_prefix,
            context.settings.redis.redacted_url(),
            context.metrics,
        )

    @property
    def _connect_timeout(self) -> float:
        return self.settings.redis.connect_timeout

    def _client(self) -> redis.asyncio.Redis:
        settings = self.settings.redis
        options = connection_options(PROBE_TIMEOUT, settings.connect_timeout)
        options["retry"] = None  # one quick answer, not a retried one: this is the probe
        return open_async(settings.url, **options)

    async def probe_redis(self) -> None:
        """PING Redis every second with a short timeout; marks the worker unready while it fails
        (a paused or partitioned Redis would otherwise show only after the socket timeout)."""
        client = self._client()
        health = self.context.redis_health
        # A new connection's handshake takes several round trips: the first ping of a client gets
        # the connect timeout on top (found by tests/chaos F25: with a 400 ms round trip no new
        # connection ever finished within the probe's timeout, and readiness flapped for ever).
        connected = False
        try:
            while not self.finished.is_set():
                try:
                    timeout = PROBE_TIMEOUT if connected else PROBE_TIMEOUT + self._connect_timeout
                    async with asyncio.timeout(timeout):
                        await client.ping()
                except (TimeoutError, redis.exceptions.RedisError, OSError) as error:
                    health.failed("ping", error if str(error) else TimeoutError("no answer"))
                    await client.aclose()
                    client = self._client()
                    connected = False
                else:
                    connected = True
                    health.succeeded()
                    await self._observe_server(client)
                await wait_for(self.finished, PROBE_INTERVAL)
        finally:
            await client.aclose()

    async def _observe_server(self, client: redis.asyncio.Redis) -> None:
        """Startup checks and data-loss detection (jobd.ops.serverwatch), outside the probe's timeout:
        a slow Redis is not an unavailable one."""
        try:
            async with asyncio.timeout(5 * PROBE_TIMEOUT):
                await self.server.observe(client)
        except (TimeoutError, redis.exceptions.RedisError, OSError) as error:
            logger.debug("redis server not observed: %s", error)

    async def refresh_queue_figures(self) -> None:
        """Read queue depths and the head job's age into the metrics every few seconds."""
        while not self.finished.is_set():
            try:
                await self._queue_figures()
                await self.outcomes.flush(self.context.redis)
            except (redis.exceptions.RedisError, OSError) as error:
                logger.debug("queue figures not refreshed: %s", error)
            except Exception:  # a figure must never stop the worker (its TaskGroup)
                logger.exception("queue figures not refreshed")
            await wait_for(self.finished, STATS_INTERVAL)

    async def _queue_figures(self) -> None:
        metrics = self.context.metrics
        client = self.context.redis
        for queue in self.settings.worker.queues:
            keys = self.context.store.keys(queue)
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.queued)
                pipe.zcard(keys.scheduled)
                pipe.zcard(keys.running)
                pipe.zcard(keys.dead)
                pipe.zrange(keys.queued, 0, 0)
                pipe.get(keys.grouped)
                pipe.zcard(keys.waiting)
                queued, scheduled, running, dead, head, grouped, waiting = await pipe.execute()
            for state, count in (
                ("queued", queued + int(grouped or 0)),
                ("scheduled", scheduled),
                ("waiting", waiting),
                ("running", running),
                ("dead", dead),
            ):
                metrics.queue_jobs.labels(queue, state).set(count)
            age = 0.0
            if head:
                # the id as bytes: one forged in Redis need not be UTF-8
                due = await client.hget(keys.job_prefix.encode() + head[0], "due_at")
                # TIME on its own: a cluster pipeline takes only commands with keys
                seconds, micros = await client.time()
                if due and due.isdigit():
                    age = max(0.0, int(seconds) + int(micros) / 1e6 - int(due) / 1000)
            metrics.queue_oldest_age.labels(queue).set(age)
        await self._limit_figures()

    async def _limit_figures(self) -> None:
        """Slots in use and jobs held back, per limit of a consumed queue (groups summed)."""
        client = self.context.redis
        metrics = self.context.metrics
        consumed = set(self.settings.worker.queues)
        for name, limit in self.settings.limits.items():
            queue = owner_queue(self.settings.functions, name)
            if queue is None or queue not in consumed:
                continue
            keys = self.context.store.keys(queue)
            bases = [keys.limit(name)]
            if limit.per_group:
                groups = await client.zrange(f"{keys.limit_prefix}{name}:groups", 0, -1)
                bases += [keys.limit(name, member_text(group)) for group in groups]
            async with client.pipeline(transaction=False) as pipe:
                for base in bases:
                    pipe.zcard(base + "running")
                    pipe.zcard(base + "held")
                counts = await pipe.execute()
            metrics.limit_slots.labels(queue, name).set(sum(counts[0::2]))
            metrics.limit_waiting.labels(queue, name).set(sum(counts[1::2]))

    async def publish(self, interval: float) -> None:
        """Write this worker's registry entry, live for three heartbeats, and the limits it enforces."""
        worker = self.context
        entry = self.registry.worker(worker.worker_id)
        live_ms = round(3 * interval * 1000)
        # Redis's clock, as `jobd status` judges liveness by it: worker clocks may be skewed.
        seconds, micros = await worker.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        async with worker.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                entry,
                mapping={
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": ",".join(worker.settings.worker.queues),
                    "concurrency": worker.settings.worker.concurrency,
                    "running": len(worker.running),
                    "processed": worker.running.processed,
                    "version": __version__,
                    "started_at": self.started_at_ms,
                    "heartbeat_at": now_ms,
                },
            )
            pipe.pexpire(entry, live_ms)
            pipe.zadd(self.registry.index, {worker.worker_id: now_ms + live_ms})
            if self.limits:
                pipe.hset(self.registry.limits, mapping=self.limits)  # type: ignore[arg-type, unused-ignore]
                pipe.pexpire(self.registry.limits, live_ms)  # gone with the last worker
            # entries of workers that vanished long ago are dropped from the index
            pipe.zremrangebyscore(self.registry.index, 0, now_ms - live_ms)
            await pipe.execute()

    async def withdraw(self) -> None:
        """Remove this worker's registry entry on a clean exit."""
        worker = self.context
        async with worker.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.registry.worker(worker.worker_id))
            pipe.zrem(self.registry.index, worker.worker_id)
            await pipe.execute()
