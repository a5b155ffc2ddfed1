"""The cron scheduler of one worker: one loop for all enabled [[cron]] entries that enqueues the job
of each tick through `cron.lua`, which lets exactly one worker of the fleet fire a tick.

Every worker runs this loop; none is a leader. The loop sleeps until the earliest next tick (on
`context.finished`, so a drained worker stops at once), then fires, per entry, every tick in (the
last moment it evaluated, now]: a worker that was blocked or stalled fires each tick it slept
through, oldest first (at most MAX_CATCH_UP; older ones count as missed), and a tick another worker
fired already costs one script call. The worker that fires a tick learns the previous fired tick
and counts the ticks between them as missed: once for the fleet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from jobd.config.settings import CronSettings
from jobd.errors import SerializationError
from jobd.model import encode_payload
from jobd.serializer import JsonSerializer
from jobd.signing import sign
from jobd.worker.context import WorkerContext
from jobd.worker.cron import (
    from_ms,
    job_id_for,
    latest_ticks,
    missed_between,
    next_tick,
    queue_for,
    start_ticks,
    to_ms,
)

logger = logging.getLogger("jobd.cron")

MAX_CATCH_UP = 1000
"""Ticks of one entry fired at once after a stall (a suspended machine); older ones are missed."""
STATE_KEEP_MS = 30 * 86_400_000
"""An entry's state lives at least this long after its last tick (longer for rarer schedules), so
that an entry removed from the configuration leaves nothing behind for ever."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Target:
    """What the job of each tick of one entry is: fixed for the worker's lifetime."""

    entry: CronSettings
    queue: str
    payload: bytes


class CronScheduler:
    """Fires the ticks of the enabled cron entries of `context.settings` (none in burst mode)."""

    def __init__(
        self,
        context: WorkerContext,
        *,
        signing_key: bytes | None = None,
        burst: bool = False,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        """`signing_key` signs each tick's job, as producers sign theirs (worker.signing_key)."""
        self.context = context
        self.signing_key = signing_key
        self.now = now
        settings = context.settings
        serializer = JsonSerializer(
            settings.worker.max_payload_bytes, settings.worker.max_json_depth
        )
        self.targets: list[_Target] = []
        for entry in settings.cron:
            if not entry.enabled or burst:
                continue
            try:
                payload = encode_payload(serializer, entry.args, dict(entry.kwargs))
            except SerializationError as error:  # and PayloadTooLarge: only this entry stops
                logger.error(
                    "cron %s: arguments cannot be stored (%s); never fired", entry.name, error
                )
                continue
            self.targets.append(_Target(entry, queue_for(settings, entry), payload))
        self._evaluated: dict[str, datetime] = {}
        """Per entry, the moment up to which its ticks have been fired (or found fired)."""
        metrics = context.metrics
        for target in self.targets:
            metrics.cron_fired.labels(target.entry.name)
            metrics.cron_missed.labels(target.entry.name)

    async def run(self) -> None:
        if not self.targets:
            return
        await self.start()
        finished = self.context.finished
        while not finished.is_set():
            await self.evaluate()
            try:
                async with asyncio.timeout(self.seconds_to_next_tick()):
                    await finished.wait()
            except TimeoutError:
                pass

    async def start(self) -> None:
        """Apply each entry's missed policy to the ticks that fell since the last one fired."""
        for target in self.targets:
            entry = target.entry
            keys = self.context.store.keys(target.queue)
            stored = await self.context.call(
                "cron state",
                functools.partial(self.context.redis.hget, keys.cron(entry.name), "last_tick"),
                keep_trying=True,
            )
            last_tick = from_ms(int(stored)) if stored else None
            now = self.now()
            self._evaluated[entry.name] = now
            for tick in start_ticks(entry, last_tick, now):
                logger.info(
                    "cron %s: tick %s missed while no worker ran; running it once (missed = "
                    "run-once)", entry.name, tick.isoformat(),
                    extra={"event": "cron_run_once", "cron": entry.name},
                )  # fmt: skip
                await self._fire(target, tick)

    async def evaluate(self) -> None:
        """Fire the ticks of every entry that fell since the last evaluation."""
        now = self.now()
        for target in self.targets:
            name = target.entry.name
            evaluated = self._evaluated.get(name, now)
            if now <= evaluated:
                continue  # also when the clock stepped back: no tick fires twice
            for tick in latest_ticks(target.entry, evaluated, now, limit=MAX_CATCH_UP):
                await self._fire(target, tick)
            self._evaluated[name] = now

    def seconds_to_next_tick(self) -> float | None:
        """Time until the earliest next tick of all entries; None if none will ever fire."""
        upcoming = [
            tick
            for target in self.targets
            if (tick := next_tick(target.entry, self._evaluated.get(target.entry.name, self.now())))
            is not None
        ]
        if not upcoming:
            return None
        return max(0.0, (min(upcoming) - self.now()).total_seconds())

    async def _fire(self, target: _Target, tick: datetime) -> None:
        entry = target.entry
        job_id = job_id_for(entry.name, tick)
        following = next_tick(entry, tick)
        period_ms = to_ms(following) - to_ms(tick) if following is not None else 0
        key = self.signing_key
        signature = sign(key, job_id, target.queue, entry.function, target.payload) if key else b""
        previous = await self.context.call(
            "cron",
            functools.partial(
                self.context.store.fire_cron,
                target.queue,
                entry.name,
                tick_ms=to_ms(tick),
                job_id=job_id,
                function=entry.function,
                payload=target.payload,
                priority=entry.priority,
                keep_ms=max(STATE_KEEP_MS, 3 * period_ms),
                signature=signature,
            ),
            keep_trying=True,
        )
        if previous is None:
            return  # another worker fired this tick (or a later one)
        metrics = self.context.metrics
        metrics.cron_fired.labels(entry.name).inc()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "cron %s: tick %s enqueued as job %s", entry.name, tick.isoformat(), job_id,
                extra={"event": "cron_fired", "cron": entry.name, "job_id": job_id},
            )  # fmt: skip
        missed = missed_between(entry, from_ms(previous), tick) if previous else 0
        if missed:
            metrics.cron_missed.labels(entry.name).inc(missed)
            logger.warning(
                "cron %s: %d tick(s) between %s and %s never ran (missed = %s)", entry.name,
                missed, from_ms(previous).isoformat(), tick.isoformat(), entry.missed.value,
                extra={"event": "cron_missed", "cron": entry.name, "missed": missed},
            )  # fmt: skip
