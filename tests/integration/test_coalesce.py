"""Concurrent `Client.enqueue` calls coalesced into one script call per queue (jobd.client.coalesce),
against a real Redis: fewer script calls, and every caller still gets its own job or its own error.

What the design guarantees, and these tests assert: a call made while no equal call is in flight
is sent at once from its caller's task; calls made while one is in flight go together, in one
script call, when it returns. So N enqueues started in one loop tick make exactly two calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jobd import crypto
from jobd.client import Client
from jobd.errors import InvalidJobOption, RedisFull, RedisUnavailable, SerializationError
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys
from tests.support.proxy import ChaosProxy
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until, wait_until
from tests.support.worker import running_worker, settings_for

SIGNING_KEY = "c" * 40
ENCRYPTION_KEY = crypto.new_key()


def script_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
        stats.get("cmdstat_eval", {}).get("calls", 0)
    )


async def warm(client: Client) -> None:
    """One enqueue first: the scripts are loaded and a connection is open and kept."""
    await client.enqueue("echo", "warm-up")


async def test_gathered_enqueues_make_two_script_calls_and_distinct_jobs(
    client: Client, redis_server: RedisServer
) -> None:
    await warm(client)
    redis_server.client().config_resetstat()
    jobs = await asyncio.gather(*(client.enqueue("echo", index, n=index) for index in range(200)))
    assert script_calls(redis_server) == 2  # the first alone, the 199 others together
    assert len({job.id for job in jobs}) == 200
    assert all(job.created for job in jobs)
    for index, job in enumerate(jobs):
        info = await client.job(job.id).info()
        assert info is not None and info.status == JobStatus.QUEUED
        assert (info.function, info.args, info.kwargs) == ("echo", (index,), {"n": index})


async def test_only_equal_options_share_a_call(client: Client, redis_server: RedisServer) -> None:
    await warm(client)
    redis_server.client().config_resetstat()
    calls = [client.enqueue("echo", i, priority=i % 2) for i in range(10)]
    calls += [client.enqueue("echo", i, queue="other") for i in range(10)]
    jobs = await asyncio.gather(*calls)
    # three keys (priority 0, priority 1, queue "other"): each sends its first call alone
    assert script_calls(redis_server) == 6
    infos = [await job.info() for job in jobs]
    assert [info.priority for info in infos[:10] if info] == [i % 2 for i in range(10)]
    assert {info.queue for info in infos[10:] if info} == {"other"}


async def test_coalescing_off_sends_one_call_per_enqueue(
    redis_url: str, key_prefix: str, redis_server: RedisServer
) -> None:
    async with Client(redis_url, key_prefix=key_prefix, coalesce=False) as client:
        await warm(client)
        redis_server.client().config_resetstat()
        jobs = await asyncio.gather(*(client.enqueue("echo", i) for i in range(20)))
    assert script_calls(redis_server) == 20
    assert all(job.created for job in jobs)


async def test_lone_enqueue_is_sent_at_once_from_its_caller(
    client: Client, redis_server: RedisServer
) -> None:
    """The enqueue's task runs one step (this test then holds the loop): Redis has already run
    its script call. A timer, or a send from another task, would need a further loop turn."""
    await warm(client)
    redis_server.client().config_resetstat()
    task = asyncio.create_task(client.enqueue("echo", "alone"))
    await asyncio.sleep(0)  # the task's first step runs in this turn of the loop
    wait_until(lambda: script_calls(redis_server) == 1, message="the lone enqueue reached Redis")
    job = await task
    assert job.created and script_calls(redis_server) == 1
    assert await job.status() == JobStatus.QUEUED


async def test_invalid_input_fails_only_its_caller(
    client: Client, redis_server: RedisServer
) -> None:
    await warm(client)
    redis_server.client().config_resetstat()
    results = await asyncio.gather(
        client.enqueue("echo", 1),
        client.enqueue("not a name!", 2),
        client.enqueue("echo", object()),
        client.enqueue("echo", 3, job_id="has space"),
        client.enqueue("echo", 4),
        client.enqueue("echo", 5, priority=10**9),
        client.enqueue("echo", 6),
        return_exceptions=True,
    )
    assert isinstance(results[1], InvalidJobOption)
    assert isinstance(results[2], SerializationError)
    assert isinstance(results[3], InvalidJobOption)
    assert isinstance(results[5], InvalidJobOption)
    good = [results[0], results[4], results[6]]
    assert script_calls(redis_server) == 2
    infos = [await job.info() for job in good]  # type: ignore[union-attr]
    assert [info.args for info in infos if info] == [(1,), (4,), (6,)]


async def test_duplicate_ids_in_one_batch_each_get_their_status(
    client: Client, redis_server: RedisServer
) -> None:
    await warm(client)
    redis_server.client().config_resetstat()
    lead, first, second, other = await asyncio.gather(
        client.enqueue("echo", 0, job_id="lead"),
        client.enqueue("echo", 1, job_id="dup"),
        client.enqueue("echo", 2, job_id="dup"),
        client.enqueue("echo", 3, job_id="other"),
    )
    assert script_calls(redis_server) == 2  # "dup" twice went in the same call
    assert (lead.created, first.created, second.created, other.created) == (True, True, False, True)
    assert first.id == second.id == "dup"
    info = await client.job("dup").info()
    assert info is not None and info.args == (1,)  # the first one kept, as when sent one by one


async def test_a_refused_batch_fails_every_caller(own_redis: RedisServer, key_prefix: str) -> None:
    async with Client(own_redis.url, key_prefix=key_prefix) as client:
        await warm(client)
        admin = own_redis.client()
        admin.config_set("maxmemory", 1)  # every new write is refused with OOM
        admin.config_resetstat()
        results = await asyncio.gather(
            *(client.enqueue("echo", i) for i in range(20)), return_exceptions=True
        )
        stats = admin.info("commandstats")["cmdstat_evalsha"]
        admin.config_set("maxmemory", 0)
    assert all(isinstance(result, RedisFull) for result in results), results
    assert stats["calls"] == stats["failed_calls"] == 2  # the first alone, then the 19 others


async def test_a_lost_server_fails_every_caller(own_redis: RedisServer, key_prefix: str) -> None:
    async with Client(own_redis.url, key_prefix=key_prefix, socket_timeout=2) as client:
        await warm(client)
        own_redis.stop()
        results = await asyncio.gather(
            *(client.enqueue("echo", i) for i in range(20)), return_exceptions=True
        )
    assert all(isinstance(result, RedisUnavailable) for result in results), results


async def test_cancelled_callers_do_not_cancel_the_others(
    client: Client, redis_server: RedisServer
) -> None:
    await warm(client)
    redis_server.client().config_resetstat()
    tasks = {
        name: asyncio.create_task(client.enqueue("echo", name, job_id=name))
        for name in ("leader", "waiting", "other")
    }
    await asyncio.sleep(0)  # each task runs its first step: "leader" is sent, the others wait
    tasks["leader"].cancel()  # its call is in flight
    tasks["waiting"].cancel()  # not sent yet: dropped
    other = await tasks["other"]
    for name in ("leader", "waiting"):
        with pytest.raises(asyncio.CancelledError):
            await tasks[name]
    assert other.created and await other.status() == JobStatus.QUEUED
    assert await client.job("waiting").status() == JobStatus.NOT_FOUND
    assert script_calls(redis_server) == 2


async def test_a_caller_cancelled_while_its_batch_is_in_flight(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """The batch's reply is held back by a proxy; one of its callers is cancelled meanwhile:
    the other gets its job, and the cancelled caller's job was stored too (it had been sent)."""
    with ChaosProxy("127.0.0.1", redis_server.port) as proxy:
        async with Client(proxy.url, key_prefix=key_prefix) as client:
            await warm(client)
            redis_server.client().config_resetstat()
            proxy.set_mode("delay", delay_ms=400)
            tasks = [
                asyncio.create_task(client.enqueue("echo", i, job_id=f"j{i}")) for i in range(3)
            ]
            await tasks[0]
            await async_wait_until(lambda: script_calls(redis_server) == 2, message="batch ran")
            proxy.set_mode("blackhole")  # the batch's reply, still delayed, is now held
            assert not tasks[1].done()
            tasks[1].cancel()
            await asyncio.wait([tasks[1]])
            assert not tasks[2].done()
            proxy.set_mode("pass")
            third = await tasks[2]
            with pytest.raises(asyncio.CancelledError):
                await tasks[1]
            assert third.created
            assert await client.job("j1").status() == JobStatus.QUEUED


async def test_many_callers_make_chunks(redis_server: RedisServer, key_prefix: str) -> None:
    from jobd.client import coalesce

    async with Client(redis_server.url, key_prefix=key_prefix) as client:
        client._coalescer = coalesce.Coalescer(client._perform, max_jobs=10)
        await warm(client)
        redis_server.client().config_resetstat()
        jobs: list[Any] = await asyncio.gather(*(client.enqueue("echo", i) for i in range(31)))
    assert script_calls(redis_server) == 4  # 1 alone, then 30 in three calls of 10
    assert len({job.id for job in jobs}) == 31 and all(job.created for job in jobs)


async def test_a_batch_whose_reply_was_lost_is_replayed_safely(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """The proxy closes the connection before the batch's reply: redis-py sends the script call
    again, which finds every job stored (the ids are the client's) and stores none twice."""
    fired: list[bytes] = []

    def first_batch(data: bytes) -> bool:
        if fired or data.count(b"echo") < 50:
            return False
        fired.append(data)
        return True

    with ChaosProxy("127.0.0.1", redis_server.port) as proxy:
        async with Client(proxy.url, key_prefix=key_prefix) as client:
            await warm(client)
            proxy.set_mode("drop_reply", predicate=first_batch)
            jobs = await asyncio.gather(*(client.enqueue("echo", i) for i in range(200)))
            proxy.set_mode("pass")
            assert fired and proxy.dropped
            assert len({job.id for job in jobs}) == 200
            assert jobs[0].created and not any(job.created for job in jobs[1:])  # found, replayed
            statuses = await asyncio.gather(*(job.status() for job in jobs))
    assert set(statuses) == {JobStatus.QUEUED}
    job_prefix = QueueKeys(key_prefix, "default").job_prefix
    assert len(redis_server.client().keys(job_prefix + "*")) == 201  # the warm-up job and the 200


async def test_close_waits_for_the_calls_in_flight_and_waiting(
    redis_server: RedisServer, key_prefix: str
) -> None:
    client = Client(redis_server.url, key_prefix=key_prefix)
    await warm(client)
    tasks = [asyncio.create_task(client.enqueue("echo", i)) for i in range(50)]
    await asyncio.sleep(0)  # the first is sent, the others wait for it
    await client.close()
    assert all(task.done() for task in tasks)
    jobs = [task.result() for task in tasks]
    assert all(job.created for job in jobs)


async def test_signed_and_encrypted_jobs_of_one_batch_run(
    redis_server: RedisServer, key_prefix: str, monkeypatch: pytest.MonkeyPatch, ledger: object
) -> None:
    """Each job of a coalesced call keeps its own signature and encryption: a worker that
    requires both runs every one of them."""
    monkeypatch.setenv("TEST_SIGNING_KEY", SIGNING_KEY)
    settings = settings_for(
        redis_server.url, key_prefix, worker={"signing_key": "${TEST_SIGNING_KEY}"},
        encryption_keys=[ENCRYPTION_KEY],
    )  # fmt: skip
    async with Client(
        redis_server.url, key_prefix=key_prefix, signing_key=SIGNING_KEY,
        encryption_keys=[ENCRYPTION_KEY],
    ) as client:  # fmt: skip
        await warm(client)
        redis_server.client().config_resetstat()
        jobs = await asyncio.gather(*(client.enqueue("echo", i, n=i) for i in range(30)))
        assert script_calls(redis_server) == 2
        async with running_worker(settings):
            results = [await job.result(timeout=10) for job in jobs]
    assert results == [{"args": [i], "kwargs": {"n": i}} for i in range(30)]


async def test_traced_enqueues_coalesce_and_each_job_keeps_its_own_trace_context(
    redis_server: RedisServer, key_prefix: str, monkeypatch: pytest.MonkeyPatch, ledger: object
) -> None:
    """A traced producer gives every enqueue its own trace headers: they still share one script
    call (each job carrying its own, enqueue.lua's '*'), and each job is signed with, and keeps,
    the context of its own send span; a worker that requires signatures runs them all."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setenv("TEST_SIGNING_KEY", SIGNING_KEY)
    settings = settings_for(
        redis_server.url, key_prefix, worker={"signing_key": "${TEST_SIGNING_KEY}"}
    )
    async with Client(
        redis_server.url, key_prefix=key_prefix, signing_key=SIGNING_KEY, tracer_provider=provider
    ) as client:
        await warm(client)
        redis_server.client().config_resetstat()
        jobs = await asyncio.gather(*(client.enqueue("echo", i) for i in range(30)))
        assert script_calls(redis_server) == 2
        keys = QueueKeys(key_prefix, "default")
        headers = [redis_server.client().hget(keys.job(job.id), "headers") for job in jobs]
        span_ids = {f"{span.context.span_id:016x}" for span in exporter.get_finished_spans()}
        assert len(set(headers)) == 30
        contexts = [json.loads(value)["traceparent"] for value in headers if value]
        assert len(contexts) == 30 and all(c.split("-")[2] in span_ids for c in contexts)
        async with running_worker(settings):
            results = [await job.result(timeout=10) for job in jobs]
    assert results == [{"args": [i], "kwargs": {}} for i in range(30)]
