"""The worker: fetches jobs from its queues, runs them within its concurrency, keeps their leases, and
drains on shutdown. State machine: STARTING -> RUNNING -> DRAINING -> CANCELLING -> STOPPED."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from jobd import crypto
from jobd.config.settings import Settings
from jobd.ops.health import Health
from jobd.ops.metrics import Metrics
from jobd.ops.systemd import Notifier
from jobd.redis.connect import connection_options, open_async
from jobd.redis.tls import diagnose as diagnose_tls
from jobd.serializer import JsonSerializer
from jobd.signing import key_bytes
from jobd.worker.blocking import BlockWatch
from jobd.worker.context import WorkerContext
from jobd.worker.events import EventWriter
from jobd.worker.fetcher import Fetcher
from jobd.worker.finisher import Finisher
from jobd.worker.flows import Resolver
from jobd.worker.functions import RegisteredFunction
from jobd.worker.handler import JobHandler
from jobd.worker.leases import LeaseKeeper
from jobd.worker.limits import limit_specs
from jobd.worker.monitor import Monitor
from jobd.worker.resilience import RedisCaller, RedisHealth
from jobd.worker.runner import Runner
from jobd.worker.running import RunningJobs
from jobd.worker.scheduler import CronScheduler
from jobd.worker.stats import OutcomeCounts
from jobd.worker.store import Store

if TYPE_CHECKING:
    from jobd.worker.tracing import JobTracer

logger = logging.getLogger("jobd.worker")


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CANCELLING = "cancelling"
    STOPPED = "stopped"


@dataclass(slots=True)
class Shutdown:
    """Signals from outside: `stop` starts the drain, `hurry` (a second signal) cuts it short."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    hurry: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Instruments:
    """What the worker reports to: metrics, the probes' health, and systemd."""

    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=lambda: Health(max_loop_lag=5.0))
    notifier: Notifier = field(default_factory=lambda: Notifier({}))


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs from `settings.worker.queues` until `shutdown.stop` is set (or, in burst mode, until the
    queues are empty)."""

    def __init__(
        self,
        settings: Settings,
        functions: Mapping[str, RegisteredFunction],
        *,
        state: dict[str, Any] | None = None,
        burst: bool = False,
        shutdown: Shutdown | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self.settings = settings
        worker = settings.worker
        instruments = instruments or Instruments()
        self.metrics = instruments.metrics
        self.health = instruments.health
        self.notifier = instruments.notifier
        self.functions = dict(functions)
        self.burst = burst
        self.shutdown = shutdown or Shutdown()
        self.state = State.STARTING
        self.worker_id = new_worker_id()
        self.running = RunningJobs(worker.concurrency)
        # async jobs that block the event loop past a third of the lease are named in the log
        self.block_watch = BlockWatch(min(1.0, worker.lease_timeout / 3), self.running.job_of)
        self.redis_health = RedisHealth(self.metrics, on_change=lambda _: self._refresh_ready())
        # read at each scrape (from the HTTP thread: len() of a dict is atomic), not set per job
        self.metrics.jobs_running.set_function(lambda: self.running.busy)
        self.metrics.worker_slots.set(worker.concurrency)
        options = connection_options(settings.redis.socket_timeout, settings.redis.connect_timeout)
        self.redis = open_async(settings.redis.url, **options)
        self.call = RedisCaller(
            self.redis_health,
            settings.redis.redacted_url(),
            diagnose=functools.partial(
                diagnose_tls, settings.redis.url, settings.redis.connect_timeout
            ),
        )
        # None without keys: cryptography is then never imported (docs/encryption.md)
        self.encryption_keys = crypto.keys_from(worker.encryption_keys, "worker.encryption_keys")
        self.store = Store(
            self.redis,
            prefix=settings.redis.key_prefix,
            worker_id=self.worker_id,
            lease_ms=round(worker.lease_timeout * 1000),
            # claim.lua bounds the stored payload: an encrypted one is larger than its JSON
            max_payload_bytes=crypto.sealed_size(worker.max_payload_bytes)
            if self.encryption_keys is not None
            else worker.max_payload_bytes,
            limit_specs=limit_specs(settings),
        )
        self.finished = asyncio.Event()
        """Set once drained: the helper loops end."""
        self.context = context = WorkerContext(
            settings=settings,
            worker_id=self.worker_id,
            redis=self.redis,
            call=self.call,
            redis_health=self.redis_health,
            store=self.store,
            metrics=self.metrics,
            running=self.running,
            finished=self.finished,
        )
        threads = worker.sync_threads or min(worker.concurrency, 32)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="jobd-sync")
        signing_key = key_bytes(worker.signing_key)
        runner = Runner(
            serializer=JsonSerializer(worker.max_payload_bytes, worker.max_json_depth),
            result_serializer=JsonSerializer(worker.max_result_bytes, worker.max_json_depth),
            executor=self.executor,
            state=state if state is not None else {},
        )
        self.finisher = Finisher(self.store, self.call)
        self.events = EventWriter.for_worker(self.redis, settings, self.call, self.metrics)
        self.resolver = Resolver(
            context, serializer=runner.result_serializer, keys=self.encryption_keys
        )
        self.outcomes = OutcomeCounts(settings.redis.key_prefix)
        self.handler = JobHandler(
            context,
            runner=runner,
            finisher=self.finisher,
            functions=self.functions,
            events=self.events,
            resolver=self.resolver,
            outcomes=self.outcomes,
            tracer=self._tracer(settings),
            signing_key=signing_key,
            encryption_keys=self.encryption_keys,
        )
        self.monitor = Monitor(context, outcomes=self.outcomes)
        self.leases = LeaseKeeper(
            context,
            functions=self.functions,
            report_reaped=self.handler.reports.reaped,
            publish_entry=self.monitor.publish,
            on_heartbeat=lambda: self.notifier.status(self.status_line()),
        )
        self.scheduler = CronScheduler(context, signing_key=signing_key, burst=burst)
        # Blocking waits for work, on connections apart from the hot path's, and without redis-py's
        # own retries: after a lost reply it would send the wait and its claim again, and the
        # claim's replay would sit behind a new BLPOP for up to a second (long enough for the
        # heartbeat to give its jobs back as orphans). Store.wait_and_claim replays the claim at
        # once through the hot path's client instead.
        wait_options = {**options, "retry": Retry(NoBackoff(), 0)}
        self.fetcher = Fetcher(
            context,
            handler=self.handler,
            wake_client=open_async(settings.redis.url, **wait_options),
            stop=self.shutdown.stop,
            burst=burst,
        )

    def _tracer(self, settings: Settings) -> JobTracer | None:
        """The spans of the tries, with [tracing] enabled; OpenTelemetry is imported only then."""
        if not settings.tracing.enabled:
            return None
        from jobd.worker.tracing import JobTracer, install_log_ids

        install_log_ids()
        return JobTracer(self.redis, settings.redis.key_prefix)

    @property
    def ready(self) -> bool:
        """Taking jobs and reaching Redis (readiness)."""
        return self.state == State.RUNNING and self.redis_health.available

    def _refresh_ready(self) -> None:
        ready = self.ready
        reason = self.state.value if self.state != State.RUNNING else "redis unavailable"
        self.health.set_ready(ready, reason)
        self.metrics.ready.set(1 if ready else 0)

    def _transition(self, state: State) -> None:
        self.state = state
        self._refresh_ready()
        logger.info(
            "worker %s: %s (running jobs: %d)", self.worker_id, state, len(self.running),
            extra={"event": "worker_" + state.value, "worker": self.worker_id},
        )  # fmt: skip

    def status_line(self) -> str:
        return (
            f"{self.state.value}: {len(self.running)} running, {self.running.processed} processed"
        )

    async def run(self) -> None:
        """Run until stopped; raises RedisAuthError if Redis refuses the credentials."""
        worker = self.settings.worker
        logger.info(
            "worker %s starting: queues=%s concurrency=%d functions=%s",
            self.worker_id,
            ",".join(worker.queues),
            worker.concurrency,
            ",".join(self.functions),
        )
        if self.encryption_keys is not None:
            logger.info(
                "worker %s: encrypted jobs: decrypts keys %s; jobs that come encrypted get their "
                "results, errors and events encrypted with the same key", self.worker_id,
                ", ".join(self.encryption_keys.ids),
            )  # fmt: skip
        self.block_watch.start()
        try:
            await self.call("subscribe", self.leases.check_channels, keep_trying=True)
            async with asyncio.TaskGroup() as group:
                # The first claim does not wait for the first heartbeat's round trips (reaping,
                # the registry entry, the functions told to strict producers): a claim refreshes
                # this worker's heartbeat itself, and the renewal sends the jobs claimed so far.
                # Ready (READY=1, /readyz) once the heartbeat is done too.
                fetcher = group.create_task(self.fetcher.run())
                # last before the loops start: the heartbeat loop renews one interval after this
                await self.leases.heartbeat_once()
                self._transition(State.RUNNING)
                self.notifier.ready(self.status_line())
                helpers = [
                    group.create_task(self.leases.heartbeat_loop()),
                    group.create_task(self.leases.abort_listener()),
                    group.create_task(self.monitor.probe_redis()),
                    group.create_task(self.monitor.refresh_queue_figures()),
                    group.create_task(self.notifier.watchdog()),
                    group.create_task(self.scheduler.run()),
                    group.create_task(self.events.run()),
                    group.create_task(self.resolver.run()),
                    *(
                        group.create_task(self.fetcher.waker(q))
                        for q in worker.queues
                        if not self.fetcher.pipelined_waits
                    ),
                ]
                stop = group.create_task(self.shutdown.stop.wait())
                await asyncio.wait([fetcher, stop], return_when=asyncio.FIRST_COMPLETED)
                await self.fetcher.stop(fetcher)
                stop.cancel()
                await self._drain()
                # Flags as well as cancel(): a cancellation that lands inside a redis-py call can be
                # swallowed, and a helper must not outlive the worker because of it.
                self.finished.set()
                self.fetcher.idle.set()
                for task in helpers:
                    task.cancel()
            await self._leave()
        finally:
            self.block_watch.stop()
            self.executor.shutdown(wait=False, cancel_futures=True)
            await self.redis.aclose()
            await self.fetcher.wake_client.aclose()
            await self.leases.close()
            self._transition(State.STOPPED)

    # -- shutdown ----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        self._transition(State.DRAINING)
        self.notifier.stopping(self.settings.worker.drain_timeout)
        tasks = self.running.tasks()
        if tasks:
            hurry = asyncio.create_task(self.shutdown.hurry.wait())
            await self._wait_drained(tasks, hurry)
            hurry.cancel()
        if self.running:
            self._transition(State.CANCELLING)
            self.finisher.deadline = time.monotonic() + 10
            remaining = self.running.tasks()
            self.running.cancel_all("drain")
            await asyncio.wait(remaining)

    async def _wait_drained(
        self, tasks: list[asyncio.Task[None]], hurry: asyncio.Task[bool]
    ) -> None:
        """Wait for running jobs until they are done, drain_timeout passes, or a second signal."""
        pending = set(tasks)
        deadline = time.monotonic() + self.settings.worker.drain_timeout
        while pending and not hurry.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            done, _ = await asyncio.wait(
                [*pending, hurry], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            pending -= done

    async def _leave(self) -> None:
        deadline = time.monotonic() + 5
        for queue in self.settings.worker.queues:
            try:
                await self.call(
                    "leave", functools.partial(self.store.leave, queue), deadline=deadline
                )
            except Exception as error:  # noqa: BLE001 - the heartbeat then expires on its own
                logger.warning("could not deregister from queue %s: %s", queue, error)
        try:
            await self.call("withdraw", self.monitor.withdraw, deadline=deadline)
        except Exception as error:  # noqa: BLE001 - the entry then expires on its own
            logger.warning("could not remove the registry entry: %s", error)
