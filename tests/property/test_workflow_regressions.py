"""Three ways the workflow scripts lost a parent's end, found by the model of
tests/property/model.py, each as the shortest sequence that showed it, through the real scripts
and the real `Resolver`; fixed since (dead_purge.lua, keep_unneeded and settled.lua).

docs/workflows.md promises that "a parent's end is never lost" and that a parent "keeps its result
until all its dependants have ended" and then gets its `keep_result`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio

from jobd.client import Client
from jobd.model import ErrorInfo, encode_error
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_async
from jobd.serializer import JsonSerializer
from jobd.worker.flows import Resolver
from jobd.worker.store import Finish, Store

QUEUE = "default"
KEEP_MS = 3_600_000


@pytest.fixture
async def connection(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def resolver(connection: redis.asyncio.Redis, key_prefix: str) -> Resolver:
    """A worker's resolver for QUEUE, without the rest of the worker."""
    context = SimpleNamespace(
        redis=connection,
        settings=SimpleNamespace(
            redis=SimpleNamespace(key_prefix=key_prefix), worker=SimpleNamespace(queues=(QUEUE,))
        ),
    )
    return Resolver(context, serializer=JsonSerializer())  # type: ignore[arg-type]


def store(connection: redis.asyncio.Redis, key_prefix: str) -> Store:
    return Store(
        connection, prefix=key_prefix, worker_id="w1", lease_ms=60_000, max_payload_bytes=1 << 20
    )


async def run_next(worker: Store, status: str, keep_ms: int = KEEP_MS) -> str:
    """The worker claims the next job and ends it with `status`; its id."""
    (job,) = (await worker.claim(QUEUE, 1)).jobs
    value: Any = b'"ok"'
    if status == "failed":
        value = encode_error(ErrorInfo("ValueError", "boom"))
    dead = status == "failed"
    assert await worker.finish(QUEUE, [Finish(job, status, value, keep_ms, dead)]) == ["ok"]
    return job.id


async def drain(resolver: Resolver) -> None:
    for _ in range(10):
        if not await resolver.settle_all():
            return
    raise AssertionError("the settled ZSET does not empty")


async def test_purging_a_dead_parent_before_the_resolver_settled_it_still_tells_its_child(
    client: Client, connection: redis.asyncio.Redis, key_prefix: str
) -> None:
    """dead_purge.lua used to delete the job, its dependants set and its waits set, but left its
    entry in 'settled' and its member in its own parents' dependants. The resolver then read no
    status for the entry (Resolver.settle skips a job that has not ended), so the child waited
    forever for a parent that was gone; and the purged job's parents kept their results
    forever. A purged job of a workflow now stays as a record until its end was settled."""
    keys = QueueKeys(key_prefix, QUEUE)
    worker = store(connection, key_prefix)
    await client.enqueue("echo", 1, job_id="a")
    await client.enqueue("echo", 2, job_id="b", after=["a"], after_failure="run")
    await run_next(worker, "failed")  # a: dead-lettered, in 'settled'
    purged, _ = await run_async(
        connection, "dead_purge", [keys.dead, keys.job_prefix, keys.done_prefix], ["a"]
    )
    assert purged == [b"a"]
    await drain(resolver(connection, key_prefix))
    status = await connection.hget(keys.job("b"), "status")
    waits = await connection.smembers(keys.waits("b"))
    # b runs anyway (after_failure="run"; "fail" would fail it), and the purged record is gone
    # once nothing needs it
    assert status == b"queued", f"b is {status}, waits for {waits}"
    assert await run_next(worker, "succeeded") == "b"
    await drain(resolver(connection, key_prefix))
    assert not await connection.exists(keys.job("a"), keys.dependants("a"))


async def test_a_job_with_keep_result_0_is_detached_from_its_parents(
    client: Client, connection: redis.asyncio.Redis, key_prefix: str
) -> None:
    """p -> m -> c. c is aborted while it waits, then m succeeds with keep_result = 0 (keep_ms
    0). The resolver takes c first (it ended first): detach.lua takes c off m, m has no dependant
    left, and keep_unneeded used to give m its TTL of 0 ms at once: DEL. Then the entry of m found
    no record, so m was never detached from p: p kept its result (no TTL) forever, for a
    dependant that was gone. (The same when a record's TTL ran out before its own entry was
    settled.) A job whose own end waits in 'settled' now gets no TTL before settled.lua."""
    keys = QueueKeys(key_prefix, QUEUE)
    worker = store(connection, key_prefix)
    await client.enqueue("echo", 1, job_id="p")
    await client.enqueue("echo", 2, job_id="m", after=["p"])
    await client.enqueue("echo", 3, job_id="c", after=["m"])
    assert await run_next(worker, "succeeded") == "p"
    settle = resolver(connection, key_prefix)
    await drain(settle)  # p's end reaches m: queued
    assert await client.job("c").abort()  # c: aborted while it waits, in 'settled'
    assert await run_next(worker, "succeeded", keep_ms=0) == "m"  # m: in 'settled' after c
    await drain(settle)
    assert not await connection.exists(keys.job("m"))
    dependants = await connection.smembers(keys.dependants("p"))
    # m was detached from p, which then got its keep_result (a TTL)
    assert dependants == set(), f"p still keeps its result for {dependants}"
    assert await connection.pttl(keys.job("p")) > 0


async def test_an_end_while_the_resolver_settles_the_same_job_is_not_lost(
    client: Client, connection: redis.asyncio.Redis, key_prefix: str, redis_url: str
) -> None:
    """settled.lua used to remove the job's entry whatever happened since the resolver read the
    job. g, which b waits for, fails (its entry is added); an operator retries it from the dead
    letters, and a child c is enqueued after it (g has not ended: c waits). A resolver takes g's
    entry and reads g: queued, so it has nobody to tell. Before its settled.lua, g runs and
    succeeds (then: ZADD NX kept the one entry). settled.lua removed it: g's success never
    reached b and c, which waited forever. Any end of g between the resolver's HMGET and its
    settled.lua was lost the same way (for an ended g, the window spans every resolve and detach
    pipeline of its dependants). Each end now scores its entry anew, and settled.lua removes only
    the entry the resolver took."""
    keys = QueueKeys(key_prefix, QUEUE)
    worker = store(connection, key_prefix)
    await client.enqueue("echo", 1, job_id="g")
    await client.enqueue("echo", 2, job_id="b", after=["g"], after_failure="run")
    await run_next(worker, "failed")  # g: dead-lettered, in 'settled'
    retried, _ = await run_async(
        connection,
        "dead_retry",
        [keys.dead, keys.queued, keys.wake, keys.job_prefix, keys.done_prefix],
        ["g"],
    )
    assert retried == [b"g"]
    await client.enqueue("echo", 3, job_id="c", after=["g"])
    assert await connection.hget(keys.job("c"), "status") == b"waiting"

    score = await connection.zscore(keys.settled, "g")  # the entry the resolver takes
    assert score is not None
    other = redis.asyncio.Redis.from_url(redis_url)
    settle = resolver(other, key_prefix)
    read = other.hmget

    async def hmget(*args: Any, **kwargs: Any) -> Any:
        """The resolver's read of the job; g runs to its end right after it."""
        reply = await read(*args, **kwargs)
        if args[0] == keys.job("g"):
            assert reply[0] == b"queued"
            assert await run_next(worker, "succeeded") == "g"
        return reply

    other.hmget = hmget  # type: ignore[method-assign]
    try:
        await settle.settle(QUEUE, "g", score)
    finally:
        await other.aclose()
    assert await connection.hget(keys.job("g"), "status") == b"succeeded"
    await drain(resolver(connection, key_prefix))
    # g's success reaches b and c, which are queued
    assert await connection.hget(keys.job("b"), "status") == b"queued"
    assert await connection.hget(keys.job("c"), "status") == b"queued"
