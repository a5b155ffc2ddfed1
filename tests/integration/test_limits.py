"""Limits against a real Redis and in-process workers: concurrency, rate and cost budgets shared by
the fleet, jobs held without a slot or a try, per-group budgets, jobd.Throttled, and slots that
go back when a job ends, is drained, or its worker dies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
import redis

from jobd.client import Client, JobFailed, JobStatus
from jobd.redis.keys import QueueKeys
from jobd.worker.store import Store
from tests.support.wait import async_wait_until, wait_until
from tests.support.worker import running_worker, settings_for


def spans(ledger: redis.Redis, key: str) -> list[tuple[str, str]]:
    """(event, job id) in the order the jobs wrote them."""
    return [tuple(line.decode().split("|")[:2]) for line in ledger.lrange(key, 0, -1)]  # type: ignore[misc]


def most_at_once(events: Sequence[tuple[str, str]]) -> int:
    running = top = 0
    for event, _ in events:
        running += 1 if event == "start" else -1
        top = max(top, running)
    return top


def most_in_a_window(moments: Sequence[datetime], seconds: float) -> int:
    """The most moments in any window of `seconds` (closed on the left, open on the right)."""
    times = sorted(moment.timestamp() for moment in moments)
    return max(sum(1 for other in times if start <= other < start + seconds) for start in times)


async def started_at(jobs: Sequence[Any]) -> list[datetime]:
    infos = [await job.info() for job in jobs]
    return [info.started_at for info in infos if info is not None and info.started_at]


async def test_a_concurrency_limit_holds_jobs_without_a_slot_or_a_try(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 2}},
        functions={"sleep_record": {"limits": ["api"]}},
    )  # fmt: skip
    key = f"{key_prefix}:spans"
    limited = [await client.enqueue("sleep_record", 0.2, key) for _ in range(6)]
    async with running_worker(settings) as worker:
        # unlimited jobs of the same queue pass the held ones (no head-of-line blocking)
        free = await client.enqueue("echo", "free")
        assert await free.result(timeout=10) == {"args": ["free"], "kwargs": {}}
        waiting = [job for job in limited if await job.status() == JobStatus.QUEUED]
        assert waiting, "some limited jobs wait while two run"
        assert len(worker.running) <= 2  # held jobs take no worker slot
        for job in limited:
            assert await job.result(timeout=20) == "slept"
        text = worker.metrics.render().decode()
    assert most_at_once(spans(ledger, key)) == 2
    # the four jobs that waited were counted as held, and their wait observed
    assert 'jobd_limit_held_total{limit="api",queue="default"}' in text
    assert 'jobd_limit_wait_seconds_count{limit="api",queue="default"} 4.0' in text
    for job in limited:
        info = await job.info()
        assert info is not None and info.tries == 1  # waiting for the limit charged no try
    keys = QueueKeys(key_prefix, "default")
    assert await client.redis.zcard(keys.limit("api") + "running") == 0  # every slot went back


async def test_a_rate_limit_holds_in_every_window(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"rate": "4/s"}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    jobs = await client.enqueue_many([("echo", (n,), {}) for n in range(10)])
    async with running_worker(settings):
        for job in jobs:
            await job.result(timeout=20)
    moments = await started_at(jobs)
    assert len(moments) == 10
    assert most_in_a_window(moments, 1.0) == 4


async def test_a_cost_limit_counts_each_jobs_cost(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"tokens": {"cost": "10/s"}},
        functions={"echo": {"limits": ["tokens"]}},
    )  # fmt: skip
    jobs = [await client.enqueue("echo", n, cost=4) for n in range(5)]
    too_big = await client.enqueue("echo", "big", cost=11)
    async with running_worker(settings):
        for job in jobs:
            await job.result(timeout=20)
        with pytest.raises(JobFailed, match="cost 11 is above limit tokens") as caught:
            await too_big.result(timeout=10)
    assert caught.value.error_type == "CostAboveLimit"
    # 4 + 4 fit in 10, a third 4 does not: two starts at most in any second
    assert most_in_a_window(await started_at(jobs), 1.0) == 2


async def test_per_group_limits_give_each_group_its_budget(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"tenant": {"concurrency": 1, "per_group": True}},
        functions={"sleep_record": {"limits": ["tenant"]}},
    )  # fmt: skip
    keys = {group: f"{key_prefix}:{group}" for group in ("a", "b")}
    both = f"{key_prefix}:both"
    jobs = []
    for group, key in keys.items():
        for _ in range(3):
            jobs.append(await client.enqueue("sleep_record", 0.15, key, group=group))
        jobs.append(await client.enqueue("sleep_record", 0.15, both, group=group))
    async with running_worker(settings):
        for job in jobs:
            assert await job.result(timeout=20) == "slept"
    for key in keys.values():
        assert most_at_once(spans(ledger, key)) == 1
    info = await jobs[0].info()
    assert info is not None


async def test_throttled_pauses_the_limit_and_charges_no_try(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"rate": "100/s"}},
        functions={"throttled": {"limits": ["api"]}},
    )  # fmt: skip
    job = await client.enqueue("throttled", f"{key_prefix}:runs", 2, 0.2, "api")
    async with running_worker(settings) as worker:
        assert await job.result(timeout=20) == 3
        text = worker.metrics.render().decode()
    info = await job.info()
    assert info is not None and info.tries == 1  # two throttled runs, then the one that counted
    assert 'jobd_limit_throttled_total{limit="api",queue="default"} 2.0' in text
    assert 'outcome="throttled",queue="default"} 2.0' in text


async def test_a_job_throttled_too_long_is_dead_lettered(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"rate": "100/s", "max_throttled": "300ms"}},
        functions={"throttled": {"limits": ["api"]}},
    )  # fmt: skip
    job = await client.enqueue("throttled", f"{key_prefix}:runs", 1000, 0.1)
    async with running_worker(settings) as worker:
        with pytest.raises(JobFailed) as caught:
            await job.result(timeout=20)
        text = worker.metrics.render().decode()
    assert caught.value.error_type == "Throttled"
    assert 'reason="throttled"} 1.0' in text
    dead = await client.redis.zrange(QueueKeys(key_prefix, "default").dead, 0, -1)
    assert dead == [job.id.encode()]


async def test_throttled_without_limits_waits_and_is_not_charged(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(redis_url, key_prefix, functions={"throttled": {"max_tries": 1}})
    job = await client.enqueue("throttled", f"{key_prefix}:runs", 1, 0.05)
    async with running_worker(settings):
        assert await job.result(timeout=20) == 2  # max_tries 1, yet it ran twice


async def test_a_dead_workers_slot_goes_back_when_its_jobs_are_reaped(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """A worker killed mid-job holds its slot until the reaper gives its job back; then the job
    runs again and the job held behind it runs too. No slot is lost."""
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    first = await client.enqueue("echo", 1)
    second = await client.enqueue("echo", 2)
    from jobd.worker.limits import limit_specs

    dead = Store(
        client.redis, prefix=key_prefix, worker_id="gone:1:x", lease_ms=300,
        max_payload_bytes=1 << 20, limit_specs=limit_specs(settings),
    )  # fmt: skip
    claim = await dead.claim("default", 10)  # takes the slot, then "dies": never renews
    assert [job.id for job in claim.jobs] == [first.id]
    assert [(id_, limit) for id_, _, limit in claim.held] == [(second.id, "api")]
    async with running_worker(settings):
        assert await first.result(timeout=20) == {"args": [1], "kwargs": {}}
        assert await second.result(timeout=20) == {"args": [2], "kwargs": {}}
    info = await first.info()
    assert info is not None and info.lost == 1
    keys = QueueKeys(key_prefix, "default")
    assert await client.redis.zcard(keys.limit("api") + "running") == 0


async def test_an_aborted_held_job_never_runs(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"sleep_record": {"limits": ["api"]}},
    )  # fmt: skip
    key = f"{key_prefix}:spans"
    first = await client.enqueue("sleep_record", 0.3, key)
    held = await client.enqueue("sleep_record", 0, key)
    async with running_worker(settings):
        await async_wait_until(
            lambda: client.redis.hexists(QueueKeys(key_prefix, "default").job(held.id), "held"),
            message="the second job is held",
        )
        assert await held.abort() is True
        assert await first.result(timeout=10) == "slept"
        after = await client.enqueue("sleep_record", 0, key)
        assert await after.result(timeout=10) == "slept"
    assert await held.status() == JobStatus.ABORTED
    assert held.id not in {job_id for _, job_id in spans(ledger, key)}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group": "a b"}, r"group 'a b' is not valid"),
        ({"group": ""}, r"group '' is not valid"),
        ({"cost": 0}, r"cost must be an integer >= 1, got 0"),
        ({"cost": 1.5}, r"cost must be an integer >= 1, got 1.5"),
        ({"cost": True}, r"cost must be an integer >= 1, got True"),
    ],
)
async def test_bad_group_and_cost_name_the_option(
    client: Client, options: dict[str, Any], message: str
) -> None:
    from jobd.client import InvalidJobOption

    with pytest.raises(InvalidJobOption, match=message):
        await client.enqueue("echo", **options)


async def test_group_and_cost_are_stored_with_the_job(client: Client, key_prefix: str) -> None:
    job = await client.enqueue("echo", group="tenant-42", cost=1200)
    fields = await client.redis.hmget(QueueKeys(key_prefix, "default").job(job.id), "group", "cost")
    assert fields == [b"tenant-42", b"1200"]


# -- groups: fair turns ----------------------------------------------------------------------------


async def test_groups_are_served_in_turn(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    """A group with a backlog delays another group's job by about one job, not by the backlog."""
    settings = settings_for(redis_url, key_prefix, worker={"concurrency": 1})
    key = f"{key_prefix}:order"
    backlog = await client.enqueue_many([("record", (key,), {}) for _ in range(50)], group="big")
    small = await client.enqueue("record", key, group="small")
    plain = await client.enqueue("record", key)
    urgent = await client.enqueue("record", key, group="big", priority=10)
    keys = QueueKeys(key_prefix, "default")
    assert await client.redis.get(keys.base + "grouped") == b"52"
    async with running_worker(settings):
        for job in [*backlog, small, plain, urgent]:
            await job.result(timeout=20)
    order = [job_id for event, job_id in spans(ledger, key) if event == "start"]
    # The high-priority job of the big group goes first; the big group then waits for its next
    # turn, behind what was enqueued meanwhile: small's single job does not wait for big's 50.
    assert order == [urgent.id, small.id, plain.id, *(job.id for job in backlog)]
    assert await client.redis.exists(keys.base + "grouped", keys.base + "turns") == 0


async def test_an_aborted_grouped_job_leaves_no_turn_behind(
    client: Client, key_prefix: str
) -> None:
    job = await client.enqueue("echo", group="g")
    assert await job.abort() is True
    keys = QueueKeys(key_prefix, "default")
    assert (
        await client.redis.exists(
            keys.base + "turns", keys.base + "queued:g", keys.base + "grouped"
        )
        == 0
    )


async def test_set_cost_charges_the_real_cost_in_the_window_of_the_start(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"tokens": {"cost": "10/s"}},
        functions={"report_cost": {"limits": ["tokens"]}},
    )  # fmt: skip
    base = QueueKeys(key_prefix, "default").limit("tokens")
    first = await client.enqueue("report_cost", 9)  # enqueued at cost 1, really costs 9
    async with running_worker(settings):
        assert await first.result(timeout=10) == 9
        assert await client.redis.get(base + "spent") == b"9"
        second = await client.enqueue("report_cost", 2, cost=2)  # 9 + 2 > 10: waits
        assert await second.result(timeout=10) == 2
        refund = await client.enqueue("report_cost", 0, cost=5)
        assert await refund.result(timeout=10) == 0
    one, two = await started_at([first, second])
    assert (two - one).total_seconds() >= 1.0  # the 9 units left the window first
    info = await first.info()
    assert info is not None and info.cost == 9


async def test_set_cost_without_cost_limits_changes_nothing(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    settings = settings_for(redis_url, key_prefix, functions={"report_cost": {}})
    job = await client.enqueue("report_cost", 5)
    async with running_worker(settings):
        assert await job.result(timeout=10) == 5


# -- the same budget outside jobs ------------------------------------------------------------------


async def test_client_limit_shares_the_budget_with_jobs(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"sleep_record": {"limits": ["api"]}},
    )  # fmt: skip
    key = f"{key_prefix}:spans"
    keys = QueueKeys(key_prefix, "default")
    async with running_worker(settings):
        await async_wait_until(lambda: client.redis.hexists(key_prefix + ":limits", "api"))
        async with client.limit("api", timeout=10):
            job = await client.enqueue("sleep_record", 0, key)
            # the handler holds the only slot: the job waits, held by the limit
            await async_wait_until(lambda: client.redis.hexists(keys.job(job.id), "held"))
            assert (await job.info()).held_by == "api"  # type: ignore[union-attr]
        # leaving the block gave the slot to the held job
        assert await job.result(timeout=10) == "slept"
        with pytest.raises(TimeoutError, match=r"limit 'api' did not allow a start within 0\.2s"):
            blocker = await client.enqueue("sleep_record", 1.0, key)
            await async_wait_until(
                lambda: client.redis.zcard(keys.limit("api") + "running"), timeout=5
            )
            async with client.limit("api", timeout=0.2):
                pass
        assert await blocker.result(timeout=10) == "slept"


async def test_client_limit_names_a_limit_no_worker_publishes(client: Client) -> None:
    from jobd.client import InvalidJobOption

    with pytest.raises(InvalidJobOption, match="no worker publishes limit 'nope'"):
        async with client.limit("nope"):
            pass


async def test_a_hold_whose_holder_died_lapses(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """A process that took a slot and died never gives it back: the slot lapses after `hold`."""
    from jobd.client.limits import acquire, find_limit

    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    async with running_worker(settings):
        await async_wait_until(lambda: client.redis.hexists(key_prefix + ":limits", "api"))
        ref = await client.run(find_limit(key_prefix, "api"))
        verdict, _ = await client.run(acquire(key_prefix, ref, None, "client:dead", 1, 300))
        assert verdict == "ok"
        job = await client.enqueue("echo", 1)
        keys = QueueKeys(key_prefix, "default")
        await async_wait_until(lambda: client.redis.hexists(keys.job(job.id), "held"))
        assert await job.result(timeout=10) == {"args": [1], "kwargs": {}}


async def test_held_jobs_come_back_in_batches_without_waiting_for_the_fallback(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """More jobs held than a claim takes back: the rest are tried at the next claim, not one
    lease later (found by bench.limits: 2,154 held jobs waited 30 s for the fallback)."""
    settings = settings_for(
        redis_url, key_prefix,
        worker={"concurrency": 5, "lease_timeout": "30s"},
        limits={"api": {"rate": "10/s"}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    jobs = await client.enqueue_many([("echo", (n,), {}) for n in range(30)])
    async with running_worker(settings):
        for job in jobs:
            await job.result(timeout=15)  # about 3 s at 10/s; the fallback would take 30 s each
    assert most_in_a_window(await started_at(jobs), 1.0) == 10


async def test_a_replayed_claim_takes_no_budget_twice(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """redis-py re-sends a claim whose reply was lost: the replay returns the jobs the first call
    took, and the limit's window and slots count them once."""
    from jobd.redis.scripts import run_async
    from jobd.worker.limits import limit_specs

    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"rate": "10/s", "concurrency": 5}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    jobs = await client.enqueue_many([("echo", (n,), {}) for n in range(3)])
    store = Store(
        client.redis, prefix=key_prefix, worker_id="host:1:replay", lease_ms=30_000,
        max_payload_bytes=1 << 20, limit_specs=limit_specs(settings),
    )  # fmt: skip
    claim_keys, args = store._claim_call("default", 7, 10)
    first = await run_async(client.redis, "claim", claim_keys, args)
    again = await run_async(client.redis, "claim", claim_keys, args)
    ids = sorted(job.id for job in jobs)
    assert sorted(row[0].decode() for row in first[7:]) == ids
    assert sorted(row[0].decode() for row in again[7:]) == ids
    base = QueueKeys(key_prefix, "default").limit("api")
    assert await client.redis.zcard(base + "starts") == 3
    assert await client.redis.zcard(base + "running") == 3


async def test_the_sync_client_holds_a_limit_too(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """SyncClient.limit holds the slot, and its renewal thread keeps it past `hold`."""
    from jobd.client import SyncClient

    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    keys = QueueKeys(key_prefix, "default")

    def hold_past_its_expiry() -> str:
        with SyncClient(redis_url, key_prefix=key_prefix) as sync:
            with sync.limit("api", hold=1.0):
                job = sync.enqueue("echo", 1)
                wait_until(lambda: sync.redis.hexists(keys.job(job.id), "held"), timeout=10)
                # 2.5 times `hold`: without the renewal the slot would lapse and the job start
                threading.Event().wait(2.5)
                assert sync.redis.hexists(keys.job(job.id), "held")
            return job.id

    async with running_worker(settings):
        await async_wait_until(lambda: client.redis.hexists(key_prefix + ":limits", "api"))
        job_id = await asyncio.to_thread(hold_past_its_expiry)
        # leaving the block gave the slot back, and the held job got it
        assert await client.job(job_id).result(timeout=10) == {"args": [1], "kwargs": {}}


async def test_jobs_held_by_a_limit_that_left_the_configuration_still_run(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(
        redis_url, key_prefix,
        limits={"api": {"concurrency": 1}},
        functions={"echo": {"limits": ["api"]}},
    )  # fmt: skip
    from jobd.worker.limits import limit_specs

    jobs = await client.enqueue_many([("echo", (n,), {}) for n in range(3)])
    store = Store(
        client.redis, prefix=key_prefix, worker_id="gone:2:x", lease_ms=300,
        max_payload_bytes=1 << 20, limit_specs=limit_specs(settings),
    )  # fmt: skip
    claim = await store.claim("default", 10)
    assert len(claim.jobs) == 1 and len(claim.held) == 2
    # the next workers run without [limits]: the held jobs and the dead worker's one all run
    async with running_worker(settings_for(redis_url, key_prefix)):
        for job in jobs:
            assert (await job.result(timeout=20))["args"] == [jobs.index(job)]
