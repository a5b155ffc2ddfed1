"""`enqueue_durability = "replica"`: an enqueue returns only once a replica has the job (F17's
failover test is tests/chaos/test_topologies.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.client import Client, SyncClient
from jobd.errors import InvalidJobOption, NotReplicated
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until


@pytest.fixture
def replica(own_redis: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path / "replica",
        extra_args=["--replicaof", "127.0.0.1", str(own_redis.port)],
    )
    yield server
    server.close()


def _synced(server: RedisServer) -> bool:
    with server.client() as conn:
        return conn.info("replication")["master_link_status"] == "up"


async def test_without_a_replica_the_enqueue_fails_and_names_the_job(
    own_redis: RedisServer, replica: RedisServer, key_prefix: str
) -> None:
    own_redis.client().config_set("repl-diskless-sync-delay", 0)
    async with Client(
        own_redis.url, key_prefix=key_prefix, enqueue_durability="replica", replica_timeout=0.05
    ) as jobs:
        with pytest.raises(NotReplicated, match=r"0 of 1 replica.*job ids: first") as caught:
            await jobs.enqueue("echo", 1, job_id="first")
        assert caught.value.job_ids == ("first",)
    # the primary kept the job: sending it again once a replica is there is safe (with time for
    # the replica's acknowledgement: 50 ms was only for the failure above to come quickly)
    replica.start()
    wait_until(lambda: _synced(replica), 15, message="replica synced")
    async with Client(
        own_redis.url, key_prefix=key_prefix, enqueue_durability="replica", replica_timeout=5
    ) as jobs:
        again = await jobs.enqueue("echo", 1, job_id="first")
        assert again.created is False
        fresh = await jobs.enqueue("echo", 2, job_id="second")
        assert fresh.created is True
        with replica.client() as conn:
            assert conn.exists(f"{key_prefix}:{{default}}:job:second") == 1
        assert len(await jobs.enqueue_many([("echo", (3,), {})])) == 1


def test_the_sync_client_waits_for_the_replica_too(
    own_redis: RedisServer, replica: RedisServer, key_prefix: str
) -> None:
    with SyncClient(
        own_redis.url, key_prefix=key_prefix, enqueue_durability="replica", replica_timeout=0.05
    ) as jobs:
        with pytest.raises(NotReplicated):
            jobs.enqueue("echo", 1)
        own_redis.client().script_flush()  # the EVAL path after NOSCRIPT waits as well
        with pytest.raises(NotReplicated):
            jobs.enqueue("echo", 1)


def test_bad_durability_values_are_refused(redis_url: str) -> None:
    with pytest.raises(InvalidJobOption, match="enqueue_durability must be 'primary', 'replica'"):
        SyncClient(redis_url, enqueue_durability="disk")
    with pytest.raises(InvalidJobOption, match="not supported on Redis Cluster"):
        SyncClient("redis+cluster://127.0.0.1:7000", enqueue_durability="replica")
