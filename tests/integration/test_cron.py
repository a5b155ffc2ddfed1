"""Cron against a real Redis: two workers fire each tick once, restarts follow the missed policy,
a stalled worker catches up, and a cron job that fails follows retries and dead letters.

Tests that need a particular moment drive schedulers with an injected clock (a worker that is
constructed but not run); the fleet test runs two real workers on the wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio

from jobd.client import Client
from jobd.config.settings import Settings
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys
from jobd.worker.cron import cron_overview, job_id_for
from jobd.worker.functions import build_registry
from jobd.worker.lifecycle import Worker
from jobd.worker.scheduler import CronScheduler
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


class Clock:
    """An injected clock that moves only when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def idle_worker(settings: Settings, **options: Any) -> AsyncIterator[Worker]:
    """A worker that is constructed but not run: its scheduler is driven by the test."""
    functions, problems = build_registry(settings)
    assert not problems, problems
    worker = Worker(settings, functions, **options)
    try:
        yield worker
    finally:
        worker.executor.shutdown(wait=False)
        await worker.redis.aclose()


def sample(worker: Worker, name: str, **labels: str) -> float:
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


def minutely(redis_url: str, key_prefix: str, missed: str) -> Settings:
    entry = {"name": "minutely", "function": "echo", "schedule": "* * * * *", "missed": missed}
    return settings_for(redis_url, key_prefix, cron=[entry])


def queued_ids(redis_url: str, key_prefix: str) -> set[str]:
    members = redis.Redis.from_url(redis_url).zrange(QueueKeys(key_prefix, "default").queued, 0, -1)
    return {member.decode() for member in members}


async def has_members(client: redis.asyncio.Redis, key: str) -> bool:
    return bool(await client.zcard(key))


def ids(*ticks: datetime) -> set[str]:
    return {job_id_for("minutely", tick) for tick in ticks}


# -- the fleet --------------------------------------------------------------------------------------


async def test_two_workers_run_each_tick_once_without_gaps(
    redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    key = f"{key_prefix}:ticks"
    entries: list[dict[str, Any]] = [
        {"name": "every-second", "function": "record", "schedule": "* * * * * *", "args": [key]},
        {"name": "off", "function": "record", "schedule": "* * * * * *", "enabled": False},
    ]
    settings = settings_for(redis_url, key_prefix, cron=entries)

    def ticks_run() -> list[str]:
        return [line.decode().split("|")[1] for line in ledger.lrange(key, 0, -1)[::2]]

    async with running_worker(settings) as first, running_worker(settings) as second:
        await async_wait_until(
            lambda: len(set(ticks_run())) >= 5, timeout=15, message="five ticks did not run"
        )
    started = ticks_run()
    assert len(started) == len(set(started)), f"a tick ran twice: {sorted(started)}"
    seconds = sorted(int(job_id.rpartition(":")[2]) for job_id in started)
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), f"a tick was skipped: {seconds}"
    assert {job_id.rpartition(":")[0] for job_id in started} == {"cron:every-second"}
    tries = {line.decode().split("|")[2] for line in ledger.lrange(key, 0, -1)}
    assert tries == {"1"}
    fired = [sample(w, "jobd_cron_fired_total", entry="every-second") for w in (first, second)]
    assert sum(fired) >= len(started)
    assert sample(first, "jobd_cron_missed_ticks_total", entry="every-second") == 0
    assert sample(second, "jobd_cron_missed_ticks_total", entry="every-second") == 0
    succeeded = [
        sample(w, "jobd_cron_runs_total", entry="every-second", outcome="succeeded")
        for w in (first, second)
    ]
    assert sum(succeeded) == len(started)
    last_success = max(
        sample(w, "jobd_cron_last_success_timestamp_seconds", entry="every-second")
        for w in (first, second)
    )
    assert last_success > 0

    now = datetime.now(UTC)
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        rows = await cron_overview(client, settings, now)
    assert [row["name"] for row in rows] == ["every-second", "off"]
    shown, off = rows
    assert shown["last_job"] == job_id_for("every-second", shown["last_tick"])
    assert shown["last_status"] in {"queued", "succeeded"}
    assert shown["next_tick"] > now
    assert (shown["schedule"], shown["timezone"], shown["queue"]) == (
        "* * * * * *",
        "UTC",
        "default",
    )
    assert off == off | {"enabled": False, "last_tick": None, "last_job": None, "next_tick": None}


async def test_a_failing_cron_job_is_retried_then_dead_lettered(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    entry = {"name": "failing", "function": "fail", "schedule": "* * * * * *"}
    settings = settings_for(
        redis_url, key_prefix, functions={"fail": {"max_tries": 2}}, cron=[entry]
    )
    dead_key = QueueKeys(key_prefix, "default").dead
    async with redis.asyncio.Redis.from_url(redis_url) as plain, running_worker(settings) as worker:
        await async_wait_until(
            lambda: has_members(plain, dead_key), timeout=10, message="no job was dead-lettered"
        )
        dead = (await plain.zrange(dead_key, 0, 0))[0].decode()
    assert dead.startswith("cron:failing:")
    info = await client.job(dead).info()
    assert info is not None
    assert (info.status, info.tries, info.function) == (JobStatus.FAILED, 2, "fail")
    assert info.error is not None and info.error.type == "ValueError"
    assert sample(worker, "jobd_cron_runs_total", entry="failing", outcome="retried") >= 1
    assert sample(worker, "jobd_cron_runs_total", entry="failing", outcome="failed") >= 1
    assert sample(worker, "jobd_jobs_dead_lettered_total", queue="default", function="fail",
                  reason="failed") >= 1  # fmt: skip


# -- restarts and stalls, on an injected clock -------------------------------------------------------


async def test_restart_across_ticks_with_skip(redis_url: str, key_prefix: str) -> None:
    settings = minutely(redis_url, key_prefix, "skip")
    clock = Clock(utc(2026, 5, 1, 10, 0, 30))
    async with idle_worker(settings) as before:
        scheduler = CronScheduler(before.context, now=clock)
        await scheduler.start()
        clock.now = utc(2026, 5, 1, 10, 1, 0, 200_000)
        await scheduler.evaluate()
    assert queued_ids(redis_url, key_prefix) == ids(utc(2026, 5, 1, 10, 1))
    clock.now = utc(2026, 5, 1, 10, 5, 30)  # down from 10:01:00.2 to 10:05:30
    async with idle_worker(settings) as after:
        scheduler = CronScheduler(after.context, now=clock)
        await scheduler.start()
        assert queued_ids(redis_url, key_prefix) == ids(utc(2026, 5, 1, 10, 1)), "nothing at start"
        assert scheduler.seconds_to_next_tick() == 30
        clock.now = utc(2026, 5, 1, 10, 6, 0, 100_000)
        await scheduler.evaluate()
        assert sample(after, "jobd_cron_missed_ticks_total", entry="minutely") == 4
    assert queued_ids(redis_url, key_prefix) == ids(utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 6))


async def test_restart_across_ticks_with_run_once(redis_url: str, key_prefix: str) -> None:
    settings = minutely(redis_url, key_prefix, "run-once")
    clock = Clock(utc(2026, 5, 1, 10, 0, 30))
    async with idle_worker(settings) as before:
        scheduler = CronScheduler(before.context, now=clock)
        await scheduler.start()
        assert queued_ids(redis_url, key_prefix) == set(), "a new entry waits for its first tick"
        clock.now = utc(2026, 5, 1, 10, 1, 0, 200_000)
        await scheduler.evaluate()
    clock.now = utc(2026, 5, 1, 10, 5, 30)
    async with idle_worker(settings) as after, idle_worker(settings) as also_after:
        restarted = [
            CronScheduler(after.context, now=clock),
            CronScheduler(also_after.context, now=clock),
        ]
        for scheduler in restarted:
            await scheduler.start()
        # the 10:05 tick ran once for the fleet; 10:02 to 10:04 are missed, counted once
        assert queued_ids(redis_url, key_prefix) == ids(
            utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 5)
        )
        missed = [
            sample(w, "jobd_cron_missed_ticks_total", entry="minutely") for w in (after, also_after)
        ]
        assert sorted(missed) == [0, 3]
        clock.now = utc(2026, 5, 1, 10, 6, 0, 100_000)
        for scheduler in restarted:
            await scheduler.evaluate()
        fired = [sample(w, "jobd_cron_fired_total", entry="minutely") for w in (after, also_after)]
        assert sum(fired) == 2
    assert queued_ids(redis_url, key_prefix) == ids(
        utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 5), utc(2026, 5, 1, 10, 6)
    )


async def test_a_stalled_worker_catches_up_without_firing_a_tick_twice(
    redis_url: str, key_prefix: str
) -> None:
    settings = minutely(redis_url, key_prefix, "skip")
    clock = Clock(utc(2026, 5, 1, 10, 0, 30))
    async with idle_worker(settings) as stalled, idle_worker(settings) as punctual:
        late, on_time = (
            CronScheduler(stalled.context, now=clock),
            CronScheduler(punctual.context, now=clock),
        )
        await late.start()
        await on_time.start()
        for minute in (1, 2):
            clock.now = utc(2026, 5, 1, 10, minute, 0, 100_000)
            await on_time.evaluate()
        clock.now = utc(2026, 5, 1, 10, 4, 0, 500_000)  # `late` was blocked from 10:00:30
        await late.evaluate()
        assert sample(punctual, "jobd_cron_fired_total", entry="minutely") == 2
        assert sample(stalled, "jobd_cron_fired_total", entry="minutely") == 2  # 10:03, 10:04
        await on_time.evaluate()
        await late.evaluate()
        missed = sum(
            sample(w, "jobd_cron_missed_ticks_total", entry="minutely") for w in (stalled, punctual)
        )
        assert missed == 0
    assert queued_ids(redis_url, key_prefix) == ids(*(utc(2026, 5, 1, 10, m) for m in range(1, 5)))


async def test_a_replayed_fire_answers_as_the_first_call(redis_url: str, key_prefix: str) -> None:
    settings = minutely(redis_url, key_prefix, "skip")
    tick_ms = 1_777_000_000_000
    options: dict[str, Any] = {
        "tick_ms": tick_ms, "job_id": "cron:minutely:1777000000", "function": "echo",
        "payload": b'{"v":1,"args":[],"kwargs":{}}', "priority": 0, "keep_ms": 60_000,
    }  # fmt: skip
    async with idle_worker(settings) as one, idle_worker(settings) as other:
        assert await one.store.fire_cron("default", "minutely", **options) == 0
        assert await one.store.fire_cron("default", "minutely", **options) == 0, "a replay"
        assert await other.store.fire_cron("default", "minutely", **options) is None
        earlier = options | {"tick_ms": tick_ms - 60_000, "job_id": "cron:minutely:1776999940"}
        assert await other.store.fire_cron("default", "minutely", **earlier) is None
        later = options | {"tick_ms": tick_ms + 60_000, "job_id": "cron:minutely:1777000060"}
        assert await other.store.fire_cron("default", "minutely", **later) == tick_ms
    assert queued_ids(redis_url, key_prefix) == {
        "cron:minutely:1777000000",
        "cron:minutely:1777000060",
    }


async def test_disabled_entries_and_burst_workers_fire_nothing(
    redis_url: str, key_prefix: str
) -> None:
    entries: list[dict[str, Any]] = [
        {"name": "on", "function": "echo", "schedule": "* * * * *"},
        {"name": "off", "function": "echo", "schedule": "* * * * *", "enabled": False},
    ]
    settings = settings_for(redis_url, key_prefix, cron=entries)
    async with idle_worker(settings) as worker, idle_worker(settings, burst=True) as burst:
        assert [target.entry.name for target in CronScheduler(worker.context).targets] == ["on"]
        assert CronScheduler(burst.context, burst=True).targets == []
        await CronScheduler(burst.context, burst=True).run()  # returns at once
