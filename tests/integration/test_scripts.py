"""The Lua scripts through the worker's Store against a real Redis: fencing, replay safety, leases,
reaping and its grace after outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import redis
import redis.asyncio

from jobd.client import Client
from jobd.model import ErrorInfo
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_async
from jobd.worker.store import Finish, Store
from tests.support.redis_server import RedisServer

StoreFactory = Callable[..., Store]


def server_ms(admin: redis.Redis) -> int:
    seconds, microseconds = admin.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


@pytest.fixture
async def store_for(redis_server: RedisServer, key_prefix: str) -> AsyncIterator[StoreFactory]:
    """Stores of made-up workers on the session server; their connections close after the test."""
    clients: list[redis.asyncio.Redis] = []

    def make(worker_id: str, lease_ms: int = 1000) -> Store:
        clients.append(redis_server.async_client())
        return Store(
            clients[-1],
            prefix=key_prefix,
            worker_id=worker_id,
            lease_ms=lease_ms,
            max_payload_bytes=1024,
        )

    yield make
    for connection in clients:
        await connection.aclose()


async def test_finish_with_a_stale_token_changes_nothing(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    job = await client.enqueue("echo", 1)
    store = store_for("w1")
    (claimed,) = (await store.claim("default", 10)).jobs
    genuine = Finish(claimed, "succeeded", b'"mine"', 60_000, False)
    stale = Finish(replace(claimed, token="w2:99"), "succeeded", b'"zombie"', 60_000, False)
    assert await store.finish("default", [stale]) == ["stale"]
    info = await job.info()
    assert info is not None and info.status == "running" and info.result is None
    assert await store.finish("default", [genuine]) == ["ok"]
    # replayed after a lost reply: reported, not applied twice
    assert await store.finish("default", [genuine]) == ["replayed"]
    assert await job.result(timeout=1) == "mine"


async def test_replayed_claim_returns_the_same_jobs(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    await client.enqueue_many([("echo", (index,), {}) for index in range(5)])
    store = store_for("w1")
    # A claim whose reply was lost is sent again with the same nonce (the store keeps it pending).
    store._pending_nonce["default"] = 7
    first = await store.claim("default", 2)
    store._pending_nonce["default"] = 7
    replay = await store.claim("default", 2)
    assert [job.id for job in replay.jobs] == [job.id for job in first.jobs]
    assert {job.token for job in replay.jobs} == {"w1:7"}
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    assert admin.zcard(keys.queued) == 3 and admin.zcard(keys.running) == 2
    fresh = await store.claim("default", 2)
    assert not {job.id for job in fresh.jobs} & {job.id for job in first.jobs}


async def test_wait_and_claim_picks_up_a_job_enqueued_while_it_blocks(
    client: Client, redis_server: RedisServer, store_for: StoreFactory
) -> None:
    store = store_for("w1")
    blocking = redis_server.async_client()
    try:
        waiting = asyncio.create_task(store.wait_and_claim(blocking, "default", 10, 30.0))
        await wait_blocked(redis_server)
        job = await client.enqueue("echo", 1)
        claim = await asyncio.wait_for(waiting, 10)  # the marker ended the wait, not its 30 s
        assert [claimed.id for claimed in claim.jobs] == [job.id]
        assert (await job.info()).status == "running"  # type: ignore[union-attr]
    finally:
        await blocking.aclose()


async def test_wait_and_claim_that_times_out_still_claims(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    """The claim runs however the wait ends: a job queued without a marker (its marker went to
    another worker) is taken when the wait times out."""
    job = await client.enqueue("echo", 1)
    redis_server.client().delete(QueueKeys(key_prefix, "default").wake)
    store = store_for("w1")
    blocking = redis_server.async_client()
    try:
        claim = await store.wait_and_claim(blocking, "default", 10, 0.05)
        assert [claimed.id for claimed in claim.jobs] == [job.id]
    finally:
        await blocking.aclose()


async def test_stop_waiting_ends_the_wait_and_its_claim_takes_nothing(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    store = store_for("w1")
    blocking = redis_server.async_client()
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    try:
        waiting = asyncio.create_task(store.wait_and_claim(blocking, "default", 10, 30.0))
        await wait_blocked(redis_server)
        admin.zadd(keys.queued, {"queued-without-marker": 0})  # would be claimed if the gate failed
        await store.stop_waiting("default")
        claim = await asyncio.wait_for(waiting, 10)
        assert claim.jobs == []
        assert admin.zcard(keys.queued) == 1 and admin.zcard(keys.running) == 0
        assert not admin.exists(keys.stop("w1"))  # the claim removed the marker it found
        assert admin.llen(keys.wake) == 1  # and passed the wake-up on: a job is waiting
        # the same claim sent again after a lost reply takes nothing either
        nonce = admin.get(keys.claim("w1")).split(b"\n")[0]  # type: ignore[union-attr]
        store._pending_nonce["default"] = int(nonce)
        assert (await store.claim("default", 10)).jobs == []
        assert admin.zcard(keys.queued) == 1
    finally:
        await blocking.aclose()


async def test_stop_markers_pushed_outside_a_wait_are_removed_by_leave(
    redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    store = store_for("w1")
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    await store.stop_waiting("default")
    assert admin.llen(keys.stop("w1")) == 2 and admin.pttl(keys.stop("w1")) > 0
    await store.leave("default")
    assert not admin.exists(keys.stop("w1"))


async def test_a_wait_whose_reply_is_lost_counts_as_a_wake_up(
    own_redis: RedisServer, key_prefix: str
) -> None:
    """The reply may have carried the marker: the worker then claims through its own client."""
    client = own_redis.async_client(socket_timeout=2)
    store = Store(client, prefix=key_prefix, worker_id="w1", lease_ms=1000, max_payload_bytes=1024)
    try:
        assert await store.wait_for_work(client, "default", 0.05) is False  # timed out: no marker
        own_redis.stop()
        assert await store.wait_for_work(client, "default", 0.05) is True
    finally:
        await client.aclose()


async def wait_blocked(server: RedisServer) -> None:
    """Until Redis reports a client blocked (the BLPOP of the wait under test)."""
    admin = server.async_client()
    try:
        for _ in range(500):
            if (await admin.info("clients"))["blocked_clients"] >= 1:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no client blocked within 5 s")
    finally:
        await admin.aclose()


async def test_replayed_enqueue_creates_nothing(client: Client) -> None:
    first = await client.enqueue("echo", 1, job_id="once")
    again = await client.enqueue("echo", 1, job_id="once")
    assert first.created and not again.created


async def test_dead_worker_jobs_are_requeued_charging_the_try(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    job = await client.enqueue("echo", 1)
    dead = store_for("dead-worker", lease_ms=300)
    live = store_for("live-worker", lease_ms=300)
    (claimed,) = (await dead.claim("default", 1)).jobs
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    # The queue has been busy for a whole lease, and the dead worker's heartbeat ran out long ago.
    now_ms = server_ms(admin)
    admin.hset(keys.activity, mapping={"since": now_ms - 10_000, "last": now_ms})
    admin.zadd(keys.workers, {"dead-worker": now_ms - 5_000})
    reaped = await live.reap("default", max_lost=3)
    assert reaped.requeued == [claimed.id] and reaped.workers == ["dead-worker"]
    info = await job.info()
    assert info is not None and info.status == "queued" and info.lost == 1 and info.tries == 1
    # the dead worker's late finish is refused
    late = Finish(claimed, "succeeded", b"1", 60_000, False)
    assert await dead.finish("default", [late]) == ["stale"]
    (again,) = (await live.claim("default", 1)).jobs
    assert again.id == claimed.id and again.tries == 2 and again.lost == 1


async def test_no_reaping_right_after_a_gap_in_activity(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    """After a Redis pause or restart every heartbeat looks expired; live workers get a lease to
    renew before anything is taken from them."""
    await client.enqueue("echo", 1)
    owner = store_for("owner", lease_ms=300)
    other = store_for("other", lease_ms=300)
    (claimed,) = (await owner.claim("default", 1)).jobs
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    now_ms = server_ms(admin)
    # Nobody touched the queue for 5 s (a pause), and the owner's heartbeat is long expired.
    admin.hset(keys.activity, mapping={"since": now_ms - 60_000, "last": now_ms - 5_000})
    admin.zadd(keys.workers, {"owner": now_ms - 4_000})
    assert (await other.reap("default", max_lost=3)).requeued == []
    renewal = await owner.renew("default", [claimed])
    assert (renewal.lost, renewal.aborts, renewal.released) == ([], [], [])
    assert (await other.reap("default", max_lost=3)).requeued == []
    assert redis_server.client().hget(keys.job(claimed.id), "status") == b"running"


async def test_worker_lost_max_lost_times_dead_letters_the_job(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    job = await client.enqueue("echo", 1)
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    reaper = store_for("reaper", lease_ms=300)
    for attempt in range(2):
        victim = store_for(f"victim{attempt}", lease_ms=300)
        assert [claimed.id for claimed in (await victim.claim("default", 1)).jobs] == [job.id]
        now_ms = server_ms(admin)
        admin.hset(keys.activity, mapping={"since": now_ms - 10_000, "last": now_ms})
        admin.zadd(keys.workers, {f"victim{attempt}": now_ms - 5_000})
        reaped = await reaper.reap("default", max_lost=2)
    assert reaped.dead == [(job.id, "echo")]
    info = await job.info()
    assert info is not None and info.status == "failed" and info.lost == 2
    assert info.error is not None and info.error.type == "WorkerLost"
    assert "worker died 2 times while running this job" in info.error.message
    assert admin.zrange(keys.dead, 0, -1) == [job.id.encode()]


async def test_renew_reports_lost_leases_and_abort_requests(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    first = await client.enqueue("echo", 1)
    second = await client.enqueue("echo", 2)
    store = store_for("w1")
    one, two = (await store.claim("default", 2)).jobs
    assert {one.id, two.id} == {first.id, second.id}
    keys = QueueKeys(key_prefix, "default")
    redis_server.client().hset(keys.job(one.id), "token", "someone-else:1")
    assert await client.job(two.id).abort(timeout=0.01) is False  # requested, not yet cancelled
    renewal = await store.renew("default", [one, two])
    assert (renewal.lost, renewal.aborts) == ([(one.id, one.token)], [two.id])


async def test_renew_gives_back_jobs_claimed_but_never_received(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    """A claim whose reply never arrived (even after retries) must not strand its jobs."""
    job = await client.enqueue("echo", 1)
    store = store_for("w1", lease_ms=300)
    (orphan,) = (await store.claim("default", 1)).jobs
    keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    assert (await store.renew("default", [])).released == []  # too recent: maybe in flight
    admin.hset(keys.job(orphan.id), "started_at", server_ms(admin) - 1_000)
    assert (await store.renew("default", [])).released == [job.id]
    info = await job.info()
    assert info is not None and info.status == "queued" and info.tries == 0
    assert admin.scard(keys.owned("w1")) == 0 and admin.zcard(keys.running) == 0


async def test_renew_gives_back_nothing_while_a_claim_is_in_flight(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    """A claim that ran in Redis but whose reply the worker has not taken in yet (a Redis pause
    longer than a lease delays it) leaves its jobs with the worker: a renewal meanwhile releases
    none of them, and the claim's replay hands them over. Found by the soak: the renewal put them
    back, and this worker and another both ran them."""
    job = await client.enqueue("echo", 1)
    store = store_for("w1", lease_ms=300)
    keys, args = store._claim_call("default", store._nonce("default"), 1)
    await run_async(store.redis, "claim", keys, args)  # ran; the reply is still on its way
    queue_keys = QueueKeys(key_prefix, "default")
    admin = redis_server.client()
    admin.hset(queue_keys.job(job.id), "started_at", server_ms(admin) - 1_000)
    assert (await store.renew("default", [])).released == []
    (claimed,) = (await store.claim("default", 1)).jobs  # the same nonce: the reply again
    assert claimed.id == job.id and claimed.tries == 1
    renewal = await store.renew("default", [claimed])
    assert (renewal.lost, renewal.released) == ([], [])


async def test_retry_and_requeue_are_fenced_and_replay_safe(
    client: Client, redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    await client.enqueue("echo", 1)
    await client.enqueue("echo", 2)
    store = store_for("w1")
    retried, requeued = (await store.claim("default", 2)).jobs
    error = ErrorInfo("ValueError", "boom")
    assert (await store.retry(retried, 60_000, error))[0] == "ok"
    assert (await store.retry(retried, 60_000, error))[0] == "replayed"
    assert await store.requeue(requeued) == "ok"
    assert await store.requeue(requeued) == "stale"
    info = await client.job(requeued.id).info()
    assert info is not None and info.status == "queued" and info.tries == 0
    info = await client.job(retried.id).info()
    assert info is not None and info.status == "scheduled" and info.tries == 1


async def test_oversized_payload_is_dead_lettered_at_claim(
    redis_server: RedisServer, key_prefix: str, store_for: StoreFactory
) -> None:
    async with Client(redis_server.url, key_prefix=key_prefix) as big_client:
        job = await big_client.enqueue("echo", "x" * 5000)
    store = store_for("w1")  # limit 1024 bytes
    claim = await store.claim("default", 10)
    assert claim.jobs == [] and claim.dead == [(job.id, "echo", "payload_too_large")]
    admin = redis_server.client()
    error = admin.hget(QueueKeys(key_prefix, "default").job(job.id), "error")
    assert error is not None and b"payload is 5031 bytes, limit 1024" in error


def test_every_key_of_a_queue_is_in_one_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = QueueKeys("jobd", "emails")
    names = [
        keys.queued,
        keys.scheduled,
        keys.running,
        keys.dead,
        keys.workers,
        keys.seq,
        keys.wake,
        keys.activity,
        keys.job("a{b}c"),
        keys.done("x"),
        keys.owned("host:1:abc"),
        keys.claim("host:1:abc"),
        keys.job_prefix,
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1
