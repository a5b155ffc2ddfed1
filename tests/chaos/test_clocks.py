"""Clocks (docs/reliability.md §5.2 F21-F23). jobd takes every lease, due time and timestamp that matters
from the Redis server's clock (TIME inside the scripts); what reads a local clock is injectable or
patched here: the cron scheduler takes `now` (jobd.worker.scheduler.CronScheduler), and the other wall-clock
reads (`time.time`: the registry's "until" of published functions, metrics timestamps) are patched
for the in-process worker. Not injectable, and so not tested: the Redis host's own clock (F24)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import redis

from jobd.client import Client, SyncClient
from jobd.config.settings import Settings
from jobd.redis.keys import QueueKeys
from jobd.worker.cron import job_id_for
from jobd.worker.functions import build_registry
from jobd.worker.lifecycle import Worker
from jobd.worker.scheduler import CronScheduler
from tests.chaos.conftest import Chaos
from tests.support.checker import Expect, assert_invariants, read_ledger, snapshot
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for

HOUR = 3600.0


class FakeWallClock:
    """`time.time` shifted by `offset` seconds: jump() moves it; the monotonic clock is untouched."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWallClock]:
    clock = FakeWallClock()
    monkeypatch.setattr(time, "time", clock)
    yield clock


def redis_ms(server: RedisServer) -> int:
    with server.client() as conn:
        seconds, micros = conn.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_f21_worker_clock_jumps_change_no_lease_and_no_due_time(
    redis_server: RedisServer, key_prefix: str, ledger: redis.Redis, wall_clock: FakeWallClock
) -> None:
    key = f"ledger-{key_prefix}"  # outside the prefix the checker inspects
    settings = settings_for(
        redis_server.url, key_prefix, worker={"concurrency": 60},
        functions={"chaos": {"path": "tests.jobs_for_tests:chaos"}},
    )  # fmt: skip
    async with (
        Client(redis_server.url, key_prefix=key_prefix) as jobs,
        running_worker(settings) as w,
    ):
        running = [await jobs.enqueue("chaos", key, 2.0, job_id=f"r{n}") for n in range(50)]
        delayed = [await jobs.enqueue("chaos", key, job_id=f"d{n}", delay=2) for n in range(50)]
        await async_wait_until(lambda: ledger.llen(key) >= 50, timeout=30)
        wall_clock.jump(+HOUR)
        await async_wait_until(
            lambda: w.running.processed >= 20 or ledger.llen(key) >= 60, timeout=30
        )
        wall_clock.jump(-2 * HOUR)
        ids = [job.id for job in [*running, *delayed]]
        await async_wait_until(lambda: w.running.processed >= len(ids), timeout=30)
        lost = w.metrics.registry.get_sample_value(
            "jobd_jobs_finished_total", {"queue": "default", "function": "chaos", "outcome": "lost"}
        )
    assert not lost
    entries = read_ledger(ledger, key)
    with redis_server.client() as conn:
        state = snapshot(conn, key_prefix)
    assert_invariants(entries, state, Expect(ids))
    for job in delayed:  # ran once, and not before its due time on the Redis clock
        fields = state.jobs[job.id]
        assert int(fields["started_at"]) >= int(fields["due_at"]), fields


def test_f22_producer_clock_skew_does_not_move_relative_delays(
    chaos: Chaos, wall_clock: FakeWallClock
) -> None:
    server = chaos.start_redis()
    chaos.daemon(chaos.config())  # its clock is the true one
    wall_clock.jump(+600)  # the producer (this process) runs 10 minutes ahead
    with SyncClient(server.url, key_prefix=chaos.prefix) as jobs:
        before = redis_ms(server)
        now = jobs.enqueue("chaos", chaos.ledger_key, job_id="now")
        later = jobs.enqueue("chaos", chaos.ledger_key, job_id="later", delay=2)
        # `at` is an absolute time on the producer's clock (documented): 10 min late here
        absolute = jobs.enqueue(
            "chaos", chaos.ledger_key, job_id="at",
            at=datetime.fromtimestamp(time.time(), UTC) + timedelta(seconds=2),
        )  # fmt: skip
        after = redis_ms(server)
        chaos.wait_done([now.id, later.id])
        with chaos.client() as conn:
            due = {
                job_id: int(conn.hget(f"{chaos.prefix}:{{default}}:job:{job_id}", "due_at"))
                for job_id in ("now", "later", "at")
            }
        assert before <= due["now"] <= after
        assert before + 2000 <= due["later"] <= after + 2000
        assert due["at"] >= before + 600_000
        assert absolute.status().value == "scheduled"
        assert absolute.abort()
    exits = chaos.stop_all()
    chaos.check(Expect(["now", "later"], exits=exits))
    starts = {e.job_id: e.time for e in chaos.starts()}
    assert starts["later"] * 1000 >= due["later"] - 50  # ledger clock = Redis host clock here


@asynccontextmanager
async def idle_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker that is constructed but not run: its scheduler is driven by the test."""
    functions, problems = build_registry(settings)
    assert not problems, problems
    worker = Worker(settings, functions)
    try:
        yield worker
    finally:
        worker.executor.shutdown(wait=False)
        await worker.redis.aclose()
        await worker.leases.close()


def fired(worker: Worker, entry: str) -> float:
    return worker.metrics.registry.get_sample_value("jobd_cron_fired_total", {"entry": entry}) or 0


def queued(server: RedisServer, prefix: str) -> list[str]:
    with server.client() as conn:
        return [m.decode() for m in conn.zrange(QueueKeys(prefix, "default").queued, 0, -1)]


async def test_f21_cron_on_a_jumping_clock_fires_no_tick_twice(
    redis_server: RedisServer, key_prefix: str
) -> None:
    entry = {"name": "minutely", "function": "echo", "schedule": "* * * * *"}
    settings = settings_for(redis_server.url, key_prefix, cron=[entry])
    clock_now = [datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)]
    async with idle_worker(settings) as worker:
        scheduler = CronScheduler(worker.context, now=lambda: clock_now[0])
        await scheduler.start()
        clock_now[0] += timedelta(hours=1)  # the clock jumps an hour ahead
        await scheduler.evaluate()
        catch_up = fired(worker, "minutely")
        clock_now[0] -= timedelta(hours=2)  # and back, an hour behind
        await scheduler.evaluate()
        await scheduler.evaluate()
        assert fired(worker, "minutely") == catch_up
        clock_now[0] += timedelta(hours=2, minutes=1)  # ahead again, a minute later
        await scheduler.evaluate()
        total = fired(worker, "minutely")
    # ahead: the hour's ticks fire once each (as after a stall, up to 1000); back: nothing fires
    # twice, and nothing fires until the clock passes the last tick it fired
    assert catch_up == 60
    ticks = [datetime(2026, 5, 1, 10, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(61)]
    assert sorted(queued(redis_server, key_prefix)) == sorted(
        job_id_for("minutely", tick) for tick in ticks
    )
    assert total == 61


async def test_f23_cron_across_skewed_workers_fires_each_tick_once(
    redis_server: RedisServer, key_prefix: str
) -> None:
    entry = {"name": "every-second", "function": "echo", "schedule": "* * * * * *"}
    settings = settings_for(redis_server.url, key_prefix, cron=[entry])
    start = datetime(2026, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    base = [start]
    async with idle_worker(settings) as a, idle_worker(settings) as b, idle_worker(settings) as c:
        workers = [a, b, c]
        schedulers = [
            CronScheduler(worker.context, now=lambda skew=skew: base[0] + timedelta(seconds=skew))
            for worker, skew in zip(workers, (-2, 0, 2), strict=True)
        ]
        for scheduler in schedulers:
            await scheduler.start()
        for step in range(1, 49):  # 12 s of the base clock, in quarter seconds
            base[0] = start + timedelta(seconds=step / 4)
            for scheduler in schedulers[step % 3 :] + schedulers[: step % 3]:
                await scheduler.evaluate()
        counts = [fired(worker, "every-second") for worker in workers]
        missed = [
            worker.metrics.registry.get_sample_value(
                "jobd_cron_missed_ticks_total", {"entry": "every-second"}
            )
            for worker in workers
        ]
    job_ids = queued(redis_server, key_prefix)
    seconds = sorted(int(job_id.rpartition(":")[2]) for job_id in job_ids)
    assert len(seconds) >= 10
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # no tick skipped
    assert sum(counts) == len(job_ids)  # and none fired twice
    assert counts[2] == len(job_ids)  # the worker ahead fires them all (early, by 2 s)
    assert missed == [0, 0, 0]
