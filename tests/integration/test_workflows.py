"""Workflows against a real Redis and in-process workers: chains, fan-out/fan-in, the failure
policy and its cascade, parents that ended already, flows stored all or nothing, aborting a
waiting job, results kept for dependants, deduplication, and idempotent resolution."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from jobd.client import Client, InvalidJobOption, JobFailed, JobStatus, SyncClient
from jobd.redis.keys import QueueKeys
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for

QUEUES = {"queues": ["default", "other"]}


def settings(redis_url: str, key_prefix: str, **options: Any) -> Any:
    return settings_for(redis_url, key_prefix, worker=QUEUES, **options)


async def error_of(job: Any) -> JobFailed:
    with pytest.raises(JobFailed) as caught:
        await job.result(timeout=10)
    return caught.value


async def test_a_chain_runs_in_order_and_each_job_sees_its_parents_results(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    first = await client.enqueue("echo", 1)
    second = await client.enqueue("parents_echo", 2, after=[first])
    third = await client.enqueue("parents_echo", 3, after=[second.id])  # an id of its queue
    assert await second.status() == JobStatus.WAITING
    assert await third.status() == JobStatus.WAITING
    async with running_worker(settings(redis_url, key_prefix)):
        result = await third.result(timeout=10)
    assert result == {
        "arg": 3,
        "parents": {second.id: {"arg": 2, "parents": {first.id: {"args": [1], "kwargs": {}}}}},
    }
    infos = [await job.info() for job in (first, second, third)]
    started = [info.started_at for info in infos if info is not None]
    assert started == sorted(started) and len(started) == 3


async def test_a_fan_out_fans_in_across_queues(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    parents = [await client.enqueue("echo", n, queue="other") for n in range(20)]
    summary = await client.enqueue("parents_echo", "all", after=parents)
    async with running_worker(settings(redis_url, key_prefix)):
        result = await summary.result(timeout=10)
    assert result["parents"] == {
        job.id: {"args": [n], "kwargs": {}} for n, job in enumerate(parents)
    }


async def test_a_failed_parent_fails_its_dependants_in_turn_and_run_runs_anyway(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    parent = await client.enqueue("fail", "broken", max_tries=1)
    child = await client.enqueue("echo", "never", after=[parent])
    grandchild = await client.enqueue("echo", "never either", after=[child])
    anyway = await client.enqueue("parents_echo", "anyway", after=[parent], after_failure="run")
    async with running_worker(settings(redis_url, key_prefix)):
        failed = await error_of(child)
        assert failed.error_type == "DependencyFailed"
        assert f"parent default {parent.id} failed" in failed.message
        assert (await error_of(grandchild)).error_type == "DependencyFailed"
        seen = await anyway.result(timeout=10)
    assert seen["parents"] == {parent.id: "JobFailed: ValueError: broken"}
    dead = await client.redis.zrange(QueueKeys(key_prefix, "default").dead, 0, -1)
    assert {parent.id, child.id, grandchild.id} <= {member.decode() for member in dead}


async def test_parents_that_ended_already_count_at_once(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    done = await client.enqueue("echo", "done")
    broken = await client.enqueue("fail", "x", max_tries=1)
    async with running_worker(settings(redis_url, key_prefix)):
        await done.result(timeout=10)
        await error_of(broken)
        after_done = await client.enqueue("parents_echo", "go", after=[done])
        assert await after_done.status() in (
            JobStatus.QUEUED,
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
        )
        assert (await after_done.result(timeout=10))["parents"] == {
            done.id: {"args": ["done"], "kwargs": {}}
        }
    after_broken = await client.enqueue("echo", "no", after=[broken])
    assert await after_broken.status() == JobStatus.FAILED
    assert (await error_of(after_broken)).error_type == "DependencyFailed"


async def test_a_parent_that_does_not_exist_is_refused_and_nothing_is_stored(
    client: Client, key_prefix: str
) -> None:
    with pytest.raises(InvalidJobOption, match="after: job ghost not found in queue 'default'"):
        await client.enqueue("echo", 1, after=["ghost"], job_id="orphan")
    assert await client.job("orphan").status() == JobStatus.NOT_FOUND
    with pytest.raises(InvalidJobOption, match='after_failure must be "fail" or "run"'):
        await client.enqueue("echo", 1, after=["ghost"], after_failure="maybe")
    with pytest.raises(InvalidJobOption, match="after must be a list of jobs"):
        await client.enqueue("echo", 1, after="ghost")
    with pytest.raises(InvalidJobOption, match="cannot wait for itself"):
        await client.enqueue("echo", 1, after=["me"], job_id="me")


async def test_a_flow_is_stored_all_or_nothing_and_starts_only_once_stored(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with client.flow() as flow:
            flow.enqueue("echo", "a", job_id="never-a")
            raise RuntimeError("changed my mind")
    assert await client.job("never-a").status() == JobStatus.NOT_FOUND
    with pytest.raises(InvalidJobOption, match="not found"):
        async with client.flow() as flow:
            flow.enqueue("echo", "b", job_id="never-b")
            flow.enqueue("echo", "c", after=["ghost"])
    assert await client.job("never-b").status() == JobStatus.NOT_FOUND

    async with client.flow() as flow:  # a diamond across two queues
        top = flow.enqueue("echo", "top")
        left = flow.enqueue("parents_echo", "left", after=[top], queue="other")
        right = flow.enqueue("parents_echo", "right", after=[top])
        bottom = flow.enqueue("parents_echo", "bottom", after=[left, right])
    assert all(job.created for job in (top, left, right, bottom))
    assert await bottom.status() == JobStatus.WAITING and await top.status() == JobStatus.QUEUED
    async with running_worker(settings(redis_url, key_prefix)):
        result = await bottom.result(timeout=10)
    assert set(result["parents"]) == {left.id, right.id}
    assert result["parents"][left.id]["parents"] == {top.id: {"args": ["top"], "kwargs": {}}}


async def test_an_aborted_waiting_job_fails_its_dependants(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    parent = await client.enqueue("echo", "slow", delay=3600)
    child = await client.enqueue("echo", "c", after=[parent])
    grandchild = await client.enqueue("echo", "g", after=[child])
    assert await child.abort()
    assert await child.status() == JobStatus.ABORTED
    async with running_worker(settings(redis_url, key_prefix)):
        failed = await error_of(grandchild)
    assert f"parent default {child.id} aborted" in failed.message
    keys = QueueKeys(key_prefix, "default")
    assert await client.redis.exists(keys.waits(child.id)) == 0
    assert await client.redis.zscore(keys.waiting, child.id) is None


async def test_parents_keep_their_results_until_their_dependants_ended(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    gate = f"{key_prefix}:gate"
    quick = await client.enqueue("echo", "quick")
    slow = await client.enqueue("stream_tokens", 1, gate=gate)
    child = await client.enqueue("parents_echo", "late", after=[quick, slow])
    keys = QueueKeys(key_prefix, "default")
    config = settings(redis_url, key_prefix, defaults={"keep_result": "1s"})
    async with running_worker(config):
        await quick.result(timeout=10)
        # quick ended long before its dependant: it has no TTL while the child needs it
        assert await client.redis.pttl(keys.job(quick.id)) == -1
        ledger.rpush(gate, "go")
        result = await child.result(timeout=10)
        assert result["parents"][quick.id] == {"args": ["quick"], "kwargs": {}}
        # once the child ended, the parent gets its keep_result
        await async_wait_until(
            lambda: _ttl_set(client, keys.job(quick.id)), message="the parent's TTL"
        )


async def _ttl_set(client: Client, key: str) -> bool:
    return int(await client.redis.pttl(key)) > 0


async def test_deduplication_by_id_works_for_every_job_of_a_graph(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    async with client.flow() as flow:
        root = flow.enqueue("echo", "r", job_id="root")
        flow.enqueue("echo", "l", job_id="leaf", after=[root])
    async with client.flow() as flow:
        again_root = flow.enqueue("echo", "r2", job_id="root")
        again_leaf = flow.enqueue("echo", "l2", job_id="leaf", after=[again_root])
    assert not again_root.created and not again_leaf.created
    keys = QueueKeys(key_prefix, "default")
    assert await client.redis.smembers(keys.dependants("root")) == {b"default leaf"}
    async with running_worker(settings(redis_url, key_prefix)):
        assert await client.job("leaf").result(timeout=10) == {"args": ["l"], "kwargs": {}}


async def test_a_parent_that_ends_twice_releases_its_dependant_once(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """Resolution is idempotent: telling the child twice (a replayed reply, a second worker on
    the same settled entry) queues it once."""
    parent = await client.enqueue("echo", "p")
    child = await client.enqueue("echo", "c", after=[parent])
    keys = QueueKeys(key_prefix, "default")
    await client.redis.hset(keys.job(parent.id), "status", "succeeded")
    from jobd.redis.scripts import run_async

    for _ in range(3):
        await run_async(
            client.redis, "resolve", [keys.job(child.id), keys.waits(child.id)],
            [child.id, f"default {parent.id}", "succeeded"],
        )  # fmt: skip
    queued = await client.redis.zrange(keys.queued, 0, -1)
    assert queued.count(child.id.encode()) == 1 and await child.status() == JobStatus.QUEUED


def test_the_sync_client_and_enqueue_many_take_after(
    redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        parent = jobs.enqueue("echo", "p")
        children = jobs.enqueue_many([("echo", (n,), {}) for n in range(3)], after=[parent])
        assert [child.status() for child in children] == [JobStatus.WAITING] * 3
        with jobs.flow() as flow:
            last = flow.enqueue("echo", "last", after=children)

        async def run() -> None:
            async with running_worker(settings(redis_url, key_prefix)):
                await asyncio.to_thread(last.result, 10)

        asyncio.run(run())
        assert last.status() == JobStatus.SUCCEEDED


async def test_a_large_graph_is_stored_in_parts_and_still_all_or_nothing(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    """Over PART jobs or edges, a graph is stored held in parts of a few hundred jobs, then
    released: no script call is long, and a missing parent still stores nothing."""
    keys = QueueKeys(key_prefix, "default")
    with pytest.raises(InvalidJobOption, match="ghost"):
        async with client.flow() as flow:
            many = [flow.enqueue("echo", n, job_id=f"x{n}") for n in range(600)]
            flow.enqueue("echo", "end", after=[*many, "ghost"])
    assert await client.redis.exists(keys.job("x0"), keys.job("x599")) == 0
    assert await client.redis.zcard(keys.gated) == 0

    async with client.flow() as flow:
        parents = [flow.enqueue("echo", n) for n in range(1200)]
        fan_in = flow.enqueue("parents_echo", "all", after=parents)
    assert await fan_in.status() == JobStatus.WAITING
    assert await client.redis.zcard(keys.gated) == 0  # released
    async with running_worker(settings(redis_url, key_prefix)):
        result = await fan_in.result(timeout=30)
    assert len(result["parents"]) == 1200
    assert list(result["parents"]) == [parent.id for parent in parents]
