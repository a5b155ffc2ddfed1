"""Redis topologies other than one server (RELIABILITY.md §5.2 F17, F18); slow, so behind markers:
`python -m pytest -m sentinel` and `-m cluster`.

Where jobd stands (the README's Guarantees name these limits):
- F18 Redis Cluster: every key of a queue shares the hash tag `{queue}`, so every script touches one
  slot; with a cluster-aware client (redis-py's RedisCluster) every script works across primaries,
  which the first test checks (the asyncio RedisCluster cannot route jobd's SCRIPT LOAD, which has
  no key: the test loads the scripts on every primary first). The worker itself connects with
  `redis.asyncio.Redis` to one URL and does not follow MOVED replies: the second test states the
  goal and is expected to fail.
- F17 Sentinel: jobd has no `redis+sentinel://` URLs. A worker pointed at the primary keeps talking
  to that server after a failover (it becomes a replica and answers READONLY, which jobd treats as
  transient and retries), so it stalls instead of following the new primary: expected to fail.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster

from jobd.scripts import SCRIPTS
from jobd.store import Finish, Store
from jobd.sync_client import SyncClient
from tests.chaos.conftest import Chaos, until
from tests.support.redis_server import RedisServer, free_port

QUEUES = [f"q{n}" for n in range(12)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Three primaries built from redis-server processes (no replicas), slots spread evenly."""
    options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    nodes = [
        RedisServer(
            tmp_path / f"node{n}",
            appendonly=False,
            extra_args=[*options, "--cluster-port", str(free_port())],
        )
        for n in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert create.returncode == 0, create.stdout + create.stderr
        with nodes[0].client() as conn:
            until(lambda: b"cluster_state:ok" in conn.execute_command("CLUSTER", "INFO"), "ok")
        yield nodes
    finally:
        for node in nodes:
            node.close()


def owners(nodes: list[RedisServer]) -> set[int]:
    """The ports of the primaries owning the queues' slots: the queues must span all three."""
    with RedisCluster(host="127.0.0.1", port=nodes[0].port) as client:
        return {
            client.nodes_manager.get_node_from_slot(client.keyslot("{" + q + "}")).port
            for q in QUEUES
        }


@pytest.mark.cluster
async def test_f18_every_script_runs_on_a_cluster_through_a_cluster_client(
    cluster: list[RedisServer], key_prefix: str
) -> None:
    assert owners(cluster) == {node.port for node in cluster}
    with (
        RedisCluster(host="127.0.0.1", port=cluster[0].port) as sync_cluster,
        SyncClient(cluster[0].url, key_prefix=key_prefix, redis_client=sync_cluster) as jobs,
    ):
        handles = [jobs.enqueue("echo", n, queue=queue) for n, queue in enumerate(QUEUES)]
        # redis.asyncio.RedisCluster cannot route jobd's key-less SCRIPT LOAD (the sync client
        # sends it to every primary): load the scripts first, so EVALSHA finds them everywhere
        for script in SCRIPTS.values():
            sync_cluster.script_load(script.source)
    async with redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster[0].port) as client:
        store = Store(
            client,  # type: ignore[arg-type]
            prefix=key_prefix, worker_id="w1", lease_ms=1000, max_payload_bytes=1 << 20,
        )  # fmt: skip
        for handle, queue in zip(handles, QUEUES, strict=True):
            await store.renew(queue, [])
            (job,) = (await store.claim(queue, 1)).jobs
            assert job.id == handle.id
            assert (await store.renew(queue, [job])).lost == []
            done = Finish(job, "succeeded", b'"ok"', 60_000, False)
            assert await store.finish(queue, [done]) == ["ok"]
            assert (await store.reap(queue, 3)).requeued == []
    with (
        RedisCluster(host="127.0.0.1", port=cluster[0].port) as sync_cluster,
        SyncClient(cluster[0].url, key_prefix=key_prefix, redis_client=sync_cluster) as jobs,
    ):
        statuses = [
            jobs.job(h.id, queue=q).status().value for h, q in zip(handles, QUEUES, strict=True)
        ]
    assert statuses == ["succeeded"] * len(QUEUES)


@pytest.mark.cluster
@pytest.mark.xfail(
    strict=True,
    reason="F18: the worker connects with redis.asyncio.Redis, not RedisCluster, and gets MOVED "
    "for every queue whose slot lives on another primary",
)
def test_f18_a_worker_runs_the_queues_of_every_primary(
    cluster: list[RedisServer], chaos: Chaos
) -> None:
    config = chaos.config(cluster[0].url, worker={"queues": QUEUES})
    worker = chaos.daemon(config)
    with (
        RedisCluster(host="127.0.0.1", port=cluster[0].port) as sync_cluster,
        SyncClient(cluster[0].url, key_prefix=chaos.prefix, redis_client=sync_cluster) as jobs,
    ):
        handles = [jobs.enqueue("chaos", chaos.ledger_key, queue=queue) for queue in QUEUES]
        until(
            lambda: all(
                jobs.job(h.id, queue=h.queue).status().value == "succeeded" for h in handles
            ),
            "every queue's job ran",
            guard=15,
        )
    assert worker.running


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, list[RedisServer]]]:
    """A primary, one replica and three sentinels (redis-server --sentinel), down-after 500 ms."""
    primary = RedisServer(tmp_path / "primary", appendonly=True)
    primary.start()
    replica = RedisServer(
        tmp_path / "replica",
        appendonly=True,
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    )
    replica.start()
    sentinels = []
    try:
        for n in range(3):
            directory = tmp_path / f"sentinel{n}"
            directory.mkdir()
            port = free_port()
            (directory / "sentinel.conf").write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor jobd 127.0.0.1 {primary.port} 2\n"
                "sentinel down-after-milliseconds jobd 500\n"
                "sentinel failover-timeout jobd 5000\n"
            )
            process = subprocess.Popen(
                ["redis-server", str(directory / "sentinel.conf"), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory,
            )  # fmt: skip
            sentinels.append((process, port))
        with redis.Redis(port=sentinels[0][1]) as sentinel:
            until(
                lambda: _safe(lambda: sentinel.sentinel_replicas("jobd")), "sentinel sees replica"
            )
        yield primary, replica, [port for _, port in sentinels]  # type: ignore[misc]
    finally:
        for process, _ in sentinels:
            process.kill()
            process.wait()
        replica.close()
        primary.close()


def _safe(call: object) -> bool:
    try:
        return bool(call())  # type: ignore[operator]
    except redis.RedisError:
        return False


@pytest.mark.sentinel
@pytest.mark.xfail(
    strict=True,
    reason="F17: jobd has no redis+sentinel:// URLs; a worker pointed at the old primary stalls on "
    "READONLY after a failover instead of following the new primary",
)
def test_f17_workers_follow_a_sentinel_failover(
    sentinel_setup: tuple[RedisServer, RedisServer, list[int]], chaos: Chaos
) -> None:
    primary, replica, sentinels = sentinel_setup
    worker = chaos.daemon(chaos.config(primary.url))
    before = chaos.enqueue(20, "chaos", url=primary.url)
    chaos.wait_done(before)
    with redis.Redis(port=sentinels[0]) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", "jobd")  # deterministic, loss-free
        until(
            lambda: sentinel.sentinel_get_master_addr_by_name("jobd")[1] == replica.port,
            "the replica is the primary",
        )
    with replica.client() as conn:
        until(lambda: conn.info("replication")["role"] == "master", "promoted")
    time.sleep(1)  # let the old primary turn into a replica: the fault, not a wait for jobd
    after = chaos.enqueue(20, "chaos", url=replica.url, start=100)
    chaos.wait_done(after, guard=15)
    assert worker.running
