"""The client and an in-process worker against a real Redis: what users see of a job's life."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis

from jobd.client import Client, SyncClient
from jobd.errors import JobAborted, JobFailed, JobNotFound
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for


async def test_async_and_sync_functions_return_results(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        first = await client.enqueue("echo", 1, "two", three=3)
        second = await client.enqueue("sync_echo", [1], flag=True)
        assert await first.result(timeout=10) == {"args": [1, "two"], "kwargs": {"three": 3}}
        result = await second.result(timeout=10)
    assert result == {"args": [[1]], "kwargs": {"flag": True}, "job": second.id, "try": 1}
    info = await first.info()
    assert info is not None
    assert info.status == JobStatus.SUCCEEDED
    assert info.tries == 1
    assert info.started_at is not None and info.finished_at is not None
    assert info.enqueued_at is not None and info.enqueued_at <= info.started_at


async def test_current_job_and_startup_state(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    settings = settings_for(redis_url, key_prefix, functions={"context": {"max_tries": 7}})
    async with running_worker(settings, state={"pool": object()}):
        job = await client.enqueue("context", queue="default")
        context = await job.result(timeout=10)
    assert context == {
        "id": job.id,
        "function": "context",
        "queue": "default",
        "try": 1,
        "max_tries": 7,
        "has_deadline": True,
        "state": ["pool"],
    }


async def test_job_id_deduplicates_while_the_job_exists(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    first = await client.enqueue("echo", 1, job_id="welcome:42")
    again = await client.enqueue("echo", 2, job_id="welcome:42")
    assert (first.created, again.created) == (True, False)
    assert again.id == first.id
    async with running_worker(settings_for(redis_url, key_prefix)):
        assert await again.result(timeout=10) == {"args": [1], "kwargs": {}}
    # the result is kept, so the id still deduplicates
    third = await client.enqueue("echo", 3, job_id="welcome:42")
    assert third.created is False
    assert await third.result(timeout=1) == {"args": [1], "kwargs": {}}


async def test_priority_then_fifo_with_concurrency_one(
    client: Client, redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    key = f"{key_prefix}:order"
    plan = [("low-1", 0), ("high-1", 5), ("low-2", 0), ("urgent", 9), ("high-2", 5), ("neg", -1)]
    for name, priority in plan:
        await client.enqueue("record", key, job_id=name, priority=priority)
    settings = settings_for(redis_url, key_prefix, worker={"concurrency": 1})
    async with running_worker(settings):
        await client.job("neg").result(timeout=10)
    starts = [entry.decode().split("|")[1] for entry in ledger.lrange(key, 0, -1)[::2]]
    assert starts == ["urgent", "high-1", "high-2", "low-1", "low-2", "neg"]


async def test_enqueue_many_is_one_round_trip_and_keeps_order(
    client: Client, redis_server: object, key_prefix: str
) -> None:
    server = redis_server
    admin = server.client()  # type: ignore[attr-defined]
    admin.config_resetstat()
    jobs = await client.enqueue_many(
        [("echo", (index,), {"n": index}) for index in range(50)], priority=2
    )
    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert len(jobs) == 50 and all(job.created for job in jobs)
    infos = [await job.info() for job in jobs[:3]]
    assert [info.args for info in infos if info] == [(0,), (1,), (2,)]
    assert {info.priority for info in infos if info} == {2}


async def test_delayed_job_does_not_run_early(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("echo", "later", delay=0.6)
        assert await job.status() == JobStatus.SCHEDULED
        await job.result(timeout=10)
    info = await job.info()
    assert info and info.started_at and info.enqueued_at
    assert info.started_at - info.enqueued_at >= timedelta(milliseconds=600)


async def test_at_schedules_by_absolute_time(client: Client) -> None:
    job = await client.enqueue("echo", at=datetime.now(UTC) + timedelta(hours=1))
    info = await job.info()
    assert info and info.status == JobStatus.SCHEDULED
    assert info.due_at and info.due_at > datetime.now(UTC) + timedelta(minutes=59)


async def test_retries_are_counted_and_then_succeed(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("fail_until", 3)
        assert await job.result(timeout=10) == 3
    info = await job.info()
    assert info is not None and info.tries == 3
    assert info.error is not None and info.error.message == "try 2 fails"


async def test_retry_request_with_delay(client: Client, redis_url: str, key_prefix: str) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("retry_with_delay", 0.4)
        assert await job.result(timeout=10) == 2
    info = await job.info()
    assert info and info.tries == 2 and info.error and info.error.type == "Retry"
    assert info.started_at and info.enqueued_at
    assert info.started_at - info.enqueued_at >= timedelta(milliseconds=400)


async def test_last_failure_goes_to_dead_letters_with_traceback(
    client: Client, redis_url: str, key_prefix: str, redis_server: object
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("fail", "no luck", max_tries=2)
        with pytest.raises(JobFailed) as failure:
            await job.result(timeout=10)
    assert failure.value.error_type == "ValueError"
    assert "no luck" in str(failure.value)
    assert "Traceback" in failure.value.traceback and "jobs_for_tests.py" in failure.value.traceback
    info = await job.info()
    assert info and info.status == JobStatus.FAILED and info.tries == 2
    dead = redis_server.client().zrange(QueueKeys(key_prefix, "default").dead, 0, -1)  # type: ignore[attr-defined]
    assert dead == [job.id.encode()]


async def test_timeout_fails_the_try(client: Client, redis_url: str, key_prefix: str) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("sleep", 30, timeout=0.2, max_tries=1)
        with pytest.raises(JobFailed) as failure:
            await job.result(timeout=10)
    assert failure.value.error_type == "TimeoutError"
    assert "timed out after 0.2 s" in failure.value.message


async def test_unknown_function_is_dead_lettered_and_worker_goes_on(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        unknown = await client.enqueue("no_such_fn")
        with pytest.raises(JobFailed) as failure:
            await unknown.result(timeout=10)
        assert failure.value.error_type == "UnknownFunction"
        assert "'no_such_fn' is not registered" in failure.value.message
        assert await (await client.enqueue("echo", 1)).result(timeout=10) == {
            "args": [1],
            "kwargs": {},
        }
    info = await unknown.info()
    assert info and info.tries == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x80\x81garbage", "not valid UTF-8"),
        (b'{"v": 1, "args": [1,', "not valid JSON"),
        (b"[1, 2]", "is a JSON list, expected an object"),
        (b'{"v": 9, "args": []}', "written by a newer jobd (format 9)"),
        (b'{"v": 1, "args": [], "kwargs": {"a": 1, "a": 2}}', "duplicate key 'a'"),
    ],
)
async def test_undecodable_payload_is_dead_lettered(
    client: Client,
    redis_url: str,
    key_prefix: str,
    redis_server: object,
    payload: bytes,
    reason: str,
) -> None:
    job = await client.enqueue("echo", delay=3600)
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()  # type: ignore[attr-defined]
    admin.hset(keys.job(job.id), "payload", payload)
    admin.zadd(keys.scheduled, {job.id: 0})  # due now
    async with running_worker(settings_for(redis_url, key_prefix)):
        with pytest.raises(JobFailed) as failure:
            await job.result(timeout=10)
        assert await (await client.enqueue("echo", 2)).result(timeout=10)
    assert failure.value.error_type == "PayloadError"
    assert "payload cannot be decoded" in failure.value.message and reason in failure.value.message


async def test_expired_job_is_dropped(client: Client, redis_url: str, key_prefix: str) -> None:
    job = await client.enqueue("echo", delay=0.3, expires=0.1)
    control = await client.enqueue("echo", 1, delay=0.4)
    async with running_worker(settings_for(redis_url, key_prefix)):
        await control.result(timeout=10)
    assert await job.status() == JobStatus.NOT_FOUND
    with pytest.raises(JobNotFound):
        await job.result(timeout=1)


async def test_abort_a_queued_job(client: Client) -> None:
    job = await client.enqueue("echo", delay=60)
    assert await job.abort() is True
    assert await job.status() == JobStatus.ABORTED
    with pytest.raises(JobAborted):
        await job.result(timeout=1)
    assert await client.job("never-enqueued").abort() is False


async def test_abort_a_running_job(
    client: Client, redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    key = f"{key_prefix}:abort"
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("sleep_record", 30, key)
        await async_wait_until(lambda: ledger.llen(key) == 1, message="job did not start")
        assert await job.abort(timeout=5) is True
        assert await job.status() == JobStatus.ABORTED
        assert await (await client.enqueue("echo", 1)).result(timeout=10)
    assert ledger.llen(key) == 1  # it never reached its end


async def test_result_not_serializable_fails_without_retry(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("not_serializable")
        with pytest.raises(JobFailed, match="result not serializable"):
            await job.result(timeout=10)
    info = await job.info()
    assert info and info.tries == 1


async def test_wrong_arguments_fail_without_retry(
    client: Client, redis_url: str, key_prefix: str
) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("fail_until", 1, 2, 3)
        with pytest.raises(JobFailed, match="arguments do not match fail_until"):
            await job.result(timeout=10)
    info = await job.info()
    assert info and info.tries == 1


async def test_result_waits_without_polling(
    client: Client, redis_url: str, key_prefix: str, redis_server: object
) -> None:
    admin = redis_server.client()  # type: ignore[attr-defined]
    async with running_worker(settings_for(redis_url, key_prefix)):
        job = await client.enqueue("sleep", 1.0)

        async def running() -> bool:
            return await job.status() == JobStatus.RUNNING

        await async_wait_until(running, message="the worker did not start the job")
        admin.config_resetstat()
        assert await job.result(timeout=10) == "slept"
        stats = admin.info("commandstats")
    # observe, one blocking wait woken by the finish, observe again: not a poll every few ms
    assert stats["cmdstat_blmove"]["calls"] <= 2


async def test_sync_client_enqueues_and_waits(redis_url: str, key_prefix: str) -> None:
    async with running_worker(settings_for(redis_url, key_prefix)):
        with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
            job = await asyncio.to_thread(jobs.enqueue, "echo", 5, job_id="sync-1")
            assert job.created
            assert await asyncio.to_thread(job.result, 10) == {"args": [5], "kwargs": {}}
            assert jobs.job("sync-1").status() == JobStatus.SUCCEEDED
            many = jobs.enqueue_many([("echo", (1,), {}), ("echo", (2,), {})])
            assert await asyncio.to_thread(many[1].result, 10) == {"args": [2], "kwargs": {}}


async def test_queues_are_consumed_in_order_of_precedence(
    client: Client, redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    key = f"{key_prefix}:queues"
    await client.enqueue("record", key, queue="default", job_id="d1")
    await client.enqueue("record", key, queue="high", job_id="h1")
    settings = settings_for(
        redis_url, key_prefix, worker={"queues": ["high", "default"], "concurrency": 1}
    )
    async with running_worker(settings):
        await client.job("d1", queue="default").result(timeout=10)
    starts = [entry.decode().split("|")[1] for entry in ledger.lrange(key, 0, -1)[::2]]
    assert starts == ["h1", "d1"]
