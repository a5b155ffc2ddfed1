"""Job events against a real Redis and in-process workers: order, lifecycle events, live reading,
resuming after an id, replay after the end, retries, the cap, expiry, what emit refuses, and emit
while Redis is slow."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from jobd.client import Client, InvalidJobOption, JobEvent, JobNotFound, Progress, SyncClient
from jobd.redis.keys import QueueKeys
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for


async def collect(events: Any) -> list[JobEvent]:
    return [event async for event in events]


def names(events: list[JobEvent]) -> list[str]:
    return [event.event for event in events]


async def test_events_come_in_order_with_the_lifecycle_and_end_after_the_end_event(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    job = await client.enqueue("stream_tokens", 20)
    reader = asyncio.create_task(collect(job.events()))  # follows before the job starts
    async with running_worker(settings_for(redis_url, key_prefix)):
        events = await asyncio.wait_for(reader, 30)
    assert names(events) == ["started", *["token"] * 11, "progress", *["token"] * 9, "succeeded"]
    assert [e.data["i"] for e in events if e.event == "token"] == list(range(20))
    assert events[0].data == {"try": 1} and events[-1].data == {"try": 1}
    assert events[12].data == {"fraction": 0.5, "message": "half way"}
    ids = [event.id for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # strings in stream order
    assert all(isinstance(event_id, str) for event_id in ids)
    info = await job.info()
    assert info is not None and info.progress == Progress(0.5, "half way")


async def test_a_reader_resumes_after_an_id_with_no_gap_and_no_duplicate(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    gate = f"{key_prefix}:gate"
    job = await client.enqueue("stream_tokens", 30, gate=gate)
    async with running_worker(settings_for(redis_url, key_prefix)):
        first: list[JobEvent] = []
        async for event in job.events():
            first.append(event)
            if event.event == "token":
                break  # the job waits at its gate after its first token: it is live
        assert names(first) == ["started", "token"]
        ledger.rpush(gate, "go")
        rest = await collect(job.events(after=first[-1].id))
    combined = first + rest
    assert [e.data["i"] for e in combined if e.event == "token"] == list(range(30))
    assert [e.id for e in combined] == sorted({e.id for e in combined})
    assert rest[-1].event == "succeeded"
    # resuming after the end event yields nothing and returns; past it is an error, not a hang
    assert await collect(job.events(after=rest[-1].id)) == []
    with pytest.raises(InvalidJobOption, match="beyond the last event"):
        await collect(job.events(after=str(int(rest[-1].id) + 1)))


async def test_an_ended_job_replays_its_whole_stream(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    emitting = await client.enqueue("stream_tokens", 5)
    silent = await client.enqueue("echo", "quiet")
    async with running_worker(settings_for(redis_url, key_prefix)):
        await emitting.result(timeout=10)
        await silent.result(timeout=10)
    replayed = await collect(emitting.events())
    assert names(replayed) == ["started", "token", "token", "token", "progress", "token", "token",
                               "succeeded"]  # fmt: skip
    assert await collect(emitting.events()) == replayed  # the same, every time
    # a job that emitted nothing and was never followed has no stream: its end is all there is
    assert names(await collect(silent.events())) == ["succeeded"]
    assert names(await collect(silent.events())) == ["succeeded"]


async def test_a_retry_shows_in_the_stream_between_the_tries(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    job = await client.enqueue("stream_tokens", 2, fail_on_try=1)
    async with running_worker(settings_for(redis_url, key_prefix)):
        assert await job.result(timeout=10) == 2
    events = await collect(job.events())
    assert names(events) == ["started", "token", "token", "progress", "retrying",
                             "started", "token", "token", "progress", "succeeded"]  # fmt: skip
    retrying = events[4].data
    assert retrying["try"] == 1 and retrying["error"] == "RuntimeError"
    assert retrying["message"] == "failing try 1" and retrying["delay"] >= 0
    assert events[5].data == {"try": 2} and events[6].data == {"i": 0, "try": 2}


async def test_a_failed_job_ends_its_stream_with_the_error(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    job = await client.enqueue("stream_tokens", 1, fail_on_try=1, max_tries=1)
    async with running_worker(settings_for(redis_url, key_prefix)):
        events = await asyncio.wait_for(collect(job.events()), 30)
    assert names(events)[-1] == "failed"
    assert events[-1].data == {"try": 1, "error": "RuntimeError", "message": "failing try 1"}


async def test_the_cap_drops_the_oldest_events_and_readers_are_told(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(redis_url, key_prefix, events={"max_length": 10})
    job = await client.enqueue("stream_tokens", 40)
    async with running_worker(settings):
        await job.result(timeout=10)
    events = await collect(job.events())
    assert events[0].event == "dropped" and events[0].data["count"] > 0
    kept = events[1:]
    assert names(kept)[-1] == "succeeded" and len(kept) <= 11
    # the numbers add up: what was dropped and what is kept is everything written
    assert events[0].data["count"] + len(kept) == int(kept[-1].id)
    # a reader resuming inside the dropped part is told too; one past it is not
    told = await collect(job.events(after="000000000002"))
    assert told[0].event == "dropped" and told[0].data["count"] == events[0].data["count"] - 2
    assert names(await collect(job.events(after=events[0].id))) == names(kept)


async def test_a_stream_expires_with_the_result(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(redis_url, key_prefix, defaults={"keep_result": "30s"})
    job = await client.enqueue("stream_tokens", 3)
    async with running_worker(settings):
        await job.result(timeout=10)
    keys = QueueKeys(key_prefix, "default")
    stream_ttl = await client.redis.pttl(keys.events(job.id))
    job_ttl = await client.redis.pttl(keys.job(job.id))
    assert 0 < stream_ttl <= 30_000 and abs(stream_ttl - job_ttl) < 5_000


async def test_what_emit_refuses_is_a_clear_error_in_the_job(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    settings = settings_for(redis_url, key_prefix, events={"max_data_bytes": 1000})
    job = await client.enqueue("emit_problems")
    async with running_worker(settings):
        problems = await job.result(timeout=10)
    assert problems[0].startswith("ValueError: event name 'started' is reserved")
    assert problems[1].startswith("ValueError: event name 'two words' is not valid")
    assert problems[2].startswith("PayloadTooLarge: data of event 'big'")
    assert problems[3].startswith("SerializationError: data of event 'odd'")
    assert problems[4].startswith("ValueError: progress fraction must be a number from 0 to 1")


async def test_unknown_jobs_and_bad_ids_are_errors(client: Client) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        await collect(client.job("nope").events())
    with pytest.raises(InvalidJobOption, match="after 'abc' is not an event id"):
        client.job("nope").events(after="abc")
    with pytest.raises(InvalidJobOption, match="last_event_id"):
        client.job("nope").sse("1-2-3")
    queued = await client.enqueue("echo", "nobody runs it")
    with pytest.raises(InvalidJobOption, match="beyond the last event of job"):
        await collect(queued.events(after="000000000005"))


async def test_many_events_emitted_at_once_are_written_as_one_batch(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    job = await client.enqueue("stream_tokens", 300)  # no await that waits between its emits
    async with running_worker(settings_for(redis_url, key_prefix)):
        await job.result(timeout=10)
    batch = await client.redis.hget(QueueKeys(key_prefix, "default").job(job.id), "evb")
    assert batch is not None and int(batch.split()[-1]) <= 2  # not 301 round trips
    assert len(await collect(job.events())) == 303


async def test_emit_does_not_wait_for_a_slow_redis_and_a_full_buffer_drops_with_notice(
    own_redis: RedisServer, key_prefix: str, ledger: redis.Redis
) -> None:
    """The queue's Redis takes no writes for a while (the ledger's, another server, still does)."""
    settings = settings_for(
        own_redis.url, key_prefix, events={"buffer": 10}, worker={"lease_timeout": "30s"}
    )
    gate = f"{key_prefix}:gate"
    keys = QueueKeys(key_prefix, "default")
    async with (
        Client(own_redis.url, key_prefix=key_prefix) as client,
        running_worker(settings) as worker,
    ):
        job = await client.enqueue("stream_tokens", 40, gate=gate)
        registry, dropped_metric = worker.metrics.registry, "jobd_events_dropped_total"
        await async_wait_until(
            lambda: client.redis.xlen(keys.events(job.id)), message="first token"
        )
        await client.redis.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
        try:
            ledger.rpush(gate, "go")  # the job emits its 39 other tokens now
            await async_wait_until(
                lambda: (registry.get_sample_value(dropped_metric, {"queue": "default"}) or 0) > 0,
                timeout=10, message="a full buffer drops",
            )  # fmt: skip
            # the job went on emitting while nothing could be written
            assert await client.redis.xlen(keys.events(job.id)) == 2
        finally:
            await client.redis.execute_command("CLIENT", "UNPAUSE")
        assert await job.result(timeout=20) == 40
        events = await collect(job.events())
    dropped = [event for event in events if event.event == "dropped"]
    tokens = [event.data["i"] for event in events if event.event == "token"]
    progress = names(events).count("progress")
    # 40 tokens and one progress report: each was written or counted in a "dropped" notice
    assert dropped and sum(event.data["count"] for event in dropped) + len(tokens) + progress == 41
    assert tokens == sorted(tokens) and events[-1].event == "succeeded"


def test_the_sync_client_reads_the_same_events(
    redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    async def run_job() -> str:
        async with Client(redis_url, key_prefix=key_prefix) as client:
            job = await client.enqueue("stream_tokens", 3)
            async with running_worker(settings_for(redis_url, key_prefix)):
                await job.result(timeout=10)
            return job.id

    job_id = asyncio.run(run_job())
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        events = list(jobs.job(job_id).events())
        assert names(events) == ["started", "token", "token", "progress", "token", "succeeded"]
        body = b"".join(jobs.job(job_id).sse(last_event_id=events[3].id))
    assert body.startswith(b'id: 000000000005\nevent: token\ndata: {"i":2,"try":1}\n\n')
    assert body.endswith(b'event: succeeded\ndata: {"try":1}\n\n')


async def test_a_quiet_sse_stream_sends_keep_alive_comments(client: Client) -> None:
    job = await client.enqueue("echo", "no worker runs it yet")
    body = job.sse(keepalive=0.1)
    assert await anext(body) == b": keep-alive\n\n"
    assert await anext(body) == b": keep-alive\n\n"
    await body.aclose()


async def test_a_busy_worker_slows_its_emitters_down_and_drops_nothing(
    redis_url: str, key_prefix: str, client: Client, ledger: redis.Redis
) -> None:
    """Jobs emit far faster than a small buffer is written, on a healthy Redis: they wait for
    room instead of losing events."""
    settings = settings_for(redis_url, key_prefix, events={"buffer": 20})
    jobs = [await client.enqueue("stream_tokens", 300) for _ in range(10)]
    async with running_worker(settings) as worker:
        for job in jobs:
            assert await job.result(timeout=30) == 300
        registry = worker.metrics.registry
        dropped = registry.get_sample_value("jobd_events_dropped_total", {"queue": "default"})
        written = registry.get_sample_value("jobd_events_written_total", {"queue": "default"})
    assert (dropped or 0) == 0 and written == 10 * 301
    for job in jobs:
        events = await collect(job.events())
        assert [e.data["i"] for e in events if e.event == "token"] == list(range(300))
