"""dead_retry.lua and dead_purge.lua against a real Redis: what they change, what they skip, and that
a replay changes nothing; and the batching of `--all` in jobd.cli.dead."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from jobd.cli import dead as admin_dead
from jobd.client import SyncClient
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_sync
from tests.support.redis_server import RedisServer


@pytest.fixture
def connection(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


@pytest.fixture
def jobs(redis_url: str, key_prefix: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url, key_prefix=key_prefix) as client:
        yield client


def kill(connection: redis.Redis, keys: QueueKeys, job_id: str, at_ms: int = 1000) -> None:
    """The state finish.lua leaves for a job that failed for good."""
    connection.zrem(keys.queued, job_id)
    connection.hset(
        keys.job(job_id),
        mapping={"status": "failed", "tries": 5, "lost": 2, "finished_at": at_ms, "waiters": 1},
    )
    connection.hset(keys.job(job_id), "error", json.dumps({"type": "E", "message": "m"}))
    connection.zadd(keys.dead, {job_id: at_ms})


def retry(connection: redis.Redis, keys: QueueKeys, *ids: str) -> list[list[bytes]]:
    script_keys = [keys.dead, keys.queued, keys.wake, keys.job_prefix, keys.done_prefix]
    reply: list[list[bytes]] = run_sync(connection, "dead_retry", script_keys, ids)
    return reply


def purge(connection: redis.Redis, keys: QueueKeys, *ids: str) -> list[list[bytes]]:
    reply: list[list[bytes]] = run_sync(
        connection, "dead_purge", [keys.dead, keys.job_prefix, keys.done_prefix], ids
    )
    return reply


def test_retry_resets_the_job_and_a_replay_skips_it(
    connection: redis.Redis, jobs: SyncClient, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    job = jobs.enqueue("echo", 1, priority=7)
    score = connection.zscore(keys.queued, job.id)
    kill(connection, keys, job.id)
    connection.pexpire(keys.job(job.id), 60_000)
    connection.rpush(keys.done(job.id), "1")
    connection.delete(keys.wake)
    assert retry(connection, keys, job.id, "never-dead") == [[job.id.encode()], [b"never-dead"]]
    assert connection.zscore(keys.queued, job.id) == score  # same priority and enqueue order
    assert connection.zcard(keys.dead) == 0 and connection.llen(keys.wake) == 1
    assert connection.ttl(keys.job(job.id)) == -1 and not connection.exists(keys.done(job.id))
    fields = connection.hgetall(keys.job(job.id))
    assert (fields[b"status"], fields[b"tries"], fields[b"lost"]) == (b"queued", b"0", b"0")
    assert b"finished_at" not in fields and b"waiters" not in fields and b"error" in fields
    assert retry(connection, keys, job.id) == [[], [job.id.encode()]]  # replayed: nothing changes
    assert connection.hget(keys.job(job.id), "status") == b"queued"


def test_a_dangling_dead_member_is_dropped_without_touching_a_live_job(
    connection: redis.Redis, jobs: SyncClient, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    live = jobs.enqueue("echo", 1)
    connection.zadd(keys.dead, {live.id: 1, "gone": 1})
    for script in (retry, purge):
        assert script(connection, keys, live.id, "gone") == [[], [live.id.encode(), b"gone"]]
        assert connection.zcard(keys.dead) == 0
        assert connection.hget(keys.job(live.id), "status") == b"queued"
        connection.zadd(keys.dead, {live.id: 1, "gone": 1})


def test_purge_deletes_the_job_and_its_done_list(
    connection: redis.Redis, jobs: SyncClient, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    job = jobs.enqueue("echo", 1)
    kill(connection, keys, job.id)
    connection.rpush(keys.done(job.id), "1")
    assert purge(connection, keys, job.id) == [[job.id.encode()], []]
    assert not connection.exists(keys.job(job.id), keys.done(job.id), keys.dead)
    assert purge(connection, keys, job.id) == [[], [job.id.encode()]]


def test_all_works_in_batches_and_leaves_later_failures(
    connection: redis.Redis, jobs: SyncClient, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_dead, "BATCH", 3)
    keys = QueueKeys(key_prefix, "default")
    handles = jobs.enqueue_many([("echo", (n,), {}) for n in range(8)])
    for index, job in enumerate(handles):
        kill(connection, keys, job.id, at_ms=1000 if index < 7 else 5000)
    assert admin_dead._apply_all(connection, key_prefix, "purge", "default", 4999) == 7
    assert [member.decode() for member in connection.zrange(keys.dead, 0, -1)] == [handles[7].id]
