"""The worker's parts built on their own, without a `Worker`: each takes a `WorkerContext` and the
collaborators it names, and works against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from jobd.client import Client, JobFailed, JobStatus
from jobd.config.settings import Settings
from jobd.ops.metrics import Metrics
from jobd.redis.connect import open_async
from jobd.serializer import JsonSerializer
from jobd.worker.context import WorkerContext
from jobd.worker.events import EventWriter
from jobd.worker.fetcher import Fetcher
from jobd.worker.finisher import Finisher
from jobd.worker.flows import Resolver
from jobd.worker.functions import build_registry
from jobd.worker.handler import JobHandler
from jobd.worker.leases import LeaseKeeper
from jobd.worker.resilience import RedisCaller, RedisHealth
from jobd.worker.runner import ClaimedJob, Runner
from jobd.worker.running import RunningJob, RunningJobs
from jobd.worker.stats import STATS_KEEP_MS, OutcomeCounts, stats_key
from jobd.worker.store import Reaped, Store
from tests.support.wait import async_wait_until
from tests.support.worker import settings_for


@dataclass
class Parts:
    context: WorkerContext
    handler: JobHandler


@asynccontextmanager
async def parts_for(settings: Settings, worker_id: str = "host:1:parts") -> AsyncIterator[Parts]:
    """A context and a job handler, as the Worker would build them, and nothing else."""
    worker = settings.worker
    redis = open_async(settings.redis.url)
    metrics = Metrics()
    health = RedisHealth(metrics)
    call = RedisCaller(health, settings.redis.redacted_url())
    store = Store(
        redis,
        prefix=settings.redis.key_prefix,
        worker_id=worker_id,
        lease_ms=round(worker.lease_timeout * 1000),
        max_payload_bytes=worker.max_payload_bytes,
    )
    context = WorkerContext(
        settings=settings,
        worker_id=worker_id,
        redis=redis,
        call=call,
        redis_health=health,
        store=store,
        metrics=metrics,
        running=RunningJobs(worker.concurrency),
        finished=asyncio.Event(),
    )
    functions, problems = build_registry(settings)
    assert problems == []
    with ThreadPoolExecutor(2) as executor:
        runner = Runner(
            serializer=JsonSerializer(worker.max_payload_bytes, worker.max_json_depth),
            result_serializer=JsonSerializer(worker.max_result_bytes, worker.max_json_depth),
            executor=executor,
            state={},
        )
        handler = JobHandler(
            context,
            runner=runner,
            finisher=Finisher(store, call),
            functions=functions,
            events=EventWriter.for_worker(redis, settings, call, metrics),
            resolver=Resolver(context, serializer=runner.result_serializer),
            outcomes=OutcomeCounts(settings.redis.key_prefix),
        )
        try:
            yield Parts(context, handler)
        finally:
            await redis.aclose()


async def test_the_job_handler_stores_each_of_its_three_outcomes(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(redis_url, key_prefix, functions={"fail": {"max_tries": 2}})
    succeeds = await client.enqueue("echo", 1, two=2)
    fails = await client.enqueue("fail", "no")
    async with parts_for(settings) as parts:
        claim = await parts.context.store.claim("default", 10)
        assert sorted(job.id for job in claim.jobs) == sorted([succeeds.id, fails.id])
        for job in claim.jobs:
            await parts.handler.handle(RunningJob(job), claim.now_ms)
        assert await succeeds.result(timeout=5) == {"args": [1], "kwargs": {"two": 2}}
        assert await fails.status() == JobStatus.SCHEDULED  # try 1 of 2: retried

        retried = await async_claim(parts, fails.id)
        await parts.handler.handle(RunningJob(retried), 0)
        with pytest.raises(JobFailed, match="no"):
            await fails.result(timeout=5)
        dead = await parts.context.redis.zrange(parts.context.store.keys("default").dead, 0, -1)
        assert dead == [fails.id.encode()]


async def async_claim(parts: Parts, job_id: str) -> ClaimedJob:
    """Claim `job_id` once its retry is due."""
    found: list[ClaimedJob] = []

    async def claimed() -> bool:
        found.extend((await parts.context.store.claim("default", 1)).jobs)
        return bool(found)

    await async_wait_until(claimed, timeout=5, message="the retry never became due")
    assert found[0].id == job_id and found[0].tries == 2
    return found[0]


async def test_the_fetcher_claims_and_runs_until_the_queues_are_empty(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(redis_url, key_prefix, worker={"concurrency": 2})
    jobs = [await client.enqueue("echo", n) for n in range(5)]
    async with parts_for(settings) as parts:
        wake = open_async(redis_url)
        fetcher = Fetcher(
            parts.context,
            handler=parts.handler,
            wake_client=wake,
            stop=asyncio.Event(),
            burst=True,
        )
        try:
            await asyncio.wait_for(fetcher.run(), timeout=30)
        finally:
            await wake.aclose()
        assert len(parts.context.running) == 0
        assert parts.context.running.processed == 5
    assert [await job.result(timeout=5) for job in jobs] == [
        {"args": [n], "kwargs": {}} for n in range(5)
    ]


async def test_the_lease_keeper_renews_reports_and_cancels_an_aborted_run(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    settings = settings_for(redis_url, key_prefix)
    job = await client.enqueue("sleep", 30)
    reaped: list[tuple[str, Reaped]] = []
    entries: list[float] = []
    heartbeats: list[str] = []

    async def publish_entry(interval: float) -> None:
        entries.append(interval)

    async with parts_for(settings) as parts:
        keeper = LeaseKeeper(
            parts.context,
            functions=["echo", "sleep"],
            report_reaped=lambda queue, what: reaped.append((queue, what)),
            publish_entry=publish_entry,
            on_heartbeat=lambda: heartbeats.append("beat"),
        )
        try:
            await keeper.heartbeat_once()
            assert [queue for queue, _ in reaped] == ["default"]
            assert entries == [pytest.approx(settings.worker.lease_timeout / 3)]
            assert heartbeats == ["beat"]
            functions_key = parts.context.store.keys("default").functions
            assert sorted(await parts.context.redis.hkeys(functions_key)) == [b"echo", b"sleep"]

            running = parts.context.running
            claim = await parts.context.store.claim("default", 1)
            (entry,) = [running.start(j, parts.handler.handle, claim.now_ms) for j in claim.jobs]
            assert await job.status() == JobStatus.RUNNING
            abort = asyncio.create_task(job.abort(timeout=10))

            async def renewed_and_cancelled() -> bool:
                # the pub/sub listener is not running: the renewal finds the abort request
                await keeper.renew()
                return entry.cancel_reason is not None

            await async_wait_until(renewed_and_cancelled, timeout=10)
            assert entry.cancel_reason == "abort"
            assert await abort is True
            assert await job.status() == JobStatus.ABORTED
            await async_wait_until(lambda: len(running) == 0, timeout=5)
        finally:
            await keeper.close()


async def test_outcome_counts_go_to_the_minute_bucket_of_their_queue(
    redis_url: str, key_prefix: str, client: Client
) -> None:
    """The dashboard's throughput and failures per function: the handler counts, a flush adds
    the counts to Redis (no call per job)."""
    settings = settings_for(redis_url, key_prefix, functions={"fail": {"max_tries": 1}})
    jobs = [await client.enqueue("echo", n) for n in range(3)] + [await client.enqueue("fail")]
    async with parts_for(settings) as parts:
        claim = await parts.context.store.claim("default", 10)
        for job in claim.jobs:
            await parts.handler.handle(RunningJob(job), claim.now_ms)
        assert [await job.status() for job in jobs][-1] == JobStatus.FAILED
        minute = claim.now_ms // 60_000
        await parts.handler.outcomes.flush(parts.context.redis, claim.now_ms)
        key = stats_key(key_prefix, "default", minute)
        assert await parts.context.redis.hgetall(key) == {
            b"succeeded": b"3",
            b"failed": b"1",
            b"failed:fail": b"1",
        }
        assert 0 < await parts.context.redis.pttl(key) <= STATS_KEEP_MS
        await parts.handler.outcomes.flush(parts.context.redis, claim.now_ms)  # nothing new
        assert (await parts.context.redis.hget(key, "succeeded")) == b"3"
