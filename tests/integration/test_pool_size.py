"""Calls at once: a producer's pool grows with them (redis-py 8 alone caps it at 100 and fails the
rest), and a limit set in the URL is kept and named when it is reached."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jobd.client import Client, SyncClient
from jobd.errors import RedisUnavailable
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for

AT_ONCE = 300
"""Well above redis-py 8's default of 100 connections per pool."""


async def test_hundreds_of_enqueues_at_once_all_land(redis_url: str, key_prefix: str) -> None:
    async with Client(redis_url, key_prefix=key_prefix) as client:
        jobs = await asyncio.gather(*[client.enqueue("echo", i) for i in range(AT_ONCE)])
        assert all(job.created for job in jobs)
        statuses = await asyncio.gather(*[job.status() for job in jobs])
        assert {status.value for status in statuses} == {"queued"}


def test_a_sync_client_shared_by_hundreds_of_threads(redis_url: str, key_prefix: str) -> None:
    with SyncClient(redis_url, key_prefix=key_prefix) as client:
        pool = client.redis.connection_pool
        # every connection the threads would hold at once, taken up front: deterministic
        held = [pool.get_connection() for _ in range(AT_ONCE)]
        try:
            errors: list[BaseException] = []

            def enqueue() -> None:
                try:
                    client.enqueue("echo", 1)
                except BaseException as error:  # noqa: BLE001 - collected for the assertion
                    errors.append(error)

            thread = threading.Thread(target=enqueue)
            thread.start()
            thread.join()
            assert errors == []
        finally:
            for connection in held:
                pool.release(connection)


async def test_a_limit_in_the_url_is_kept_and_named(redis_url: str, key_prefix: str) -> None:
    url = f"{redis_url}?max_connections=2"
    async with Client(url, key_prefix=key_prefix) as client:
        # distinct priorities: 20 calls in flight at once (equal ones would share a script call)
        results = await asyncio.gather(
            *[client.enqueue("echo", i, priority=i) for i in range(20)], return_exceptions=True
        )
    refused = [result for result in results if isinstance(result, BaseException)]
    assert refused, "a pool of 2 connections took 20 calls at once"
    assert len(results) - len(refused) >= 2
    for error in refused:
        assert isinstance(error, RedisUnavailable)
        assert "max_connections in the URL" in str(error)


@pytest.mark.parametrize("url_query", ["", "?max_connections=7"])
def test_the_url_decides_the_sync_pool_size(
    redis_url: str, key_prefix: str, url_query: str
) -> None:
    with SyncClient(redis_url + url_query, key_prefix=key_prefix) as client:
        size = client.redis.connection_pool.max_connections
    assert size == (7 if url_query else 2**31)


async def test_a_worker_retrying_hundreds_of_jobs_at_once_never_calls_redis_down(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry is a call of its own: a worker whose jobs all fail at once makes as many calls
    at once as it runs jobs, and its own pool must not turn them into "Redis unavailable"."""
    settings = settings_for(redis_url, key_prefix, worker={"concurrency": AT_ONCE})
    async with Client(redis_url, key_prefix=key_prefix) as client:
        jobs = await client.enqueue_many([("fail_until", (2,), {})] * AT_ONCE)
        async with running_worker(settings) as worker:
            await async_wait_until(
                lambda: (
                    worker.metrics.registry.get_sample_value(
                        "jobd_jobs_finished_total",
                        {"queue": "default", "function": "fail_until", "outcome": "succeeded"},
                    )
                    == AT_ONCE
                ),
                timeout=60,
                message="every job retried once and succeeded",
            )
            assert worker.redis_health.available
        results = [await job.result() for job in jobs]  # one at a time: the worker is tested
    assert results == [2] * AT_ONCE
    unavailable = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert unavailable == []
