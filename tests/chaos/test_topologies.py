"""Redis topologies other than one server (docs/reliability.md §5.2 F17, F18); slow, so behind markers:
`python -m pytest -m sentinel` and `-m cluster`.

Where jobd stands (docs/guarantees.md names these limits):
- F18 Redis Cluster: every key of a queue shares the hash tag `{queue}`, so every script touches one
  slot. A `redis+cluster://` URL (jobd.redis.connect) gives workers and producers redis-py's cluster
  client, which routes each call by its key; a script that a node does not know yet goes there
  once with EVAL. The first test drives the store directly, the second runs workers.
- F17 Sentinel: with a `redis+sentinel://` URL (jobd.redis.connect) workers and producers ask the
  Sentinels for the primary; after a failover the demoted primary's first READONLY reply ends the
  connection (redis-py) and the next one goes to the new primary.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster

from jobd.client import SyncClient
from jobd.worker.store import Finish, Store
from tests.chaos.conftest import Chaos, until
from tests.support.checker import Expect, assert_invariants, snapshot
from tests.support.daemon import Daemon
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
    async with redis.asyncio.RedisCluster(host="127.0.0.1", port=cluster[0].port) as client:
        store = Store(
            client,  # type: ignore[arg-type]
            prefix=key_prefix, worker_id="w1", lease_ms=1000, max_payload_bytes=1 << 20,
        )  # fmt: skip
        for index, (handle, queue) in enumerate(zip(handles, QUEUES, strict=True)):
            await store.renew(queue, [])
            if index % 2:
                (job,) = (await store.claim(queue, 1)).jobs
            else:  # an idle worker's BLPOP and claim, pipelined to the queue's node
                (job,) = (await store.wait_and_claim(client, queue, 1, 5.0)).jobs  # type: ignore[arg-type]
            assert job.id == handle.id
            assert (await store.renew(queue, [job])).lost == []
            done = Finish(job, "succeeded", b'"ok"', 60_000, False)
            assert await store.finish(queue, [done]) == ["ok"]
            assert (await store.reap(queue, 3)).requeued == []
        await store.stop_waiting(QUEUES[0])  # a stopping worker's wait ends and claims nothing
        assert (await store.wait_and_claim(client, QUEUES[0], 1, 5.0)).jobs == []  # type: ignore[arg-type]
    with (
        RedisCluster(host="127.0.0.1", port=cluster[0].port) as sync_cluster,
        SyncClient(cluster[0].url, key_prefix=key_prefix, redis_client=sync_cluster) as jobs,
    ):
        statuses = [
            jobs.job(h.id, queue=q).status().value for h, q in zip(handles, QUEUES, strict=True)
        ]
    assert statuses == ["succeeded"] * len(QUEUES)


@pytest.mark.cluster
def test_f18_workers_run_the_queues_of_every_primary(
    cluster: list[RedisServer], chaos: Chaos
) -> None:
    """F18: two workers on a redis+cluster:// URL (two of the three nodes named: the client finds
    the third) run 240 jobs spread over 12 queues on every primary; F1's invariants hold."""
    assert owners(cluster) == {node.port for node in cluster}
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in cluster[:2])
    config = chaos.config(url, worker={"queues": QUEUES})
    workers = [chaos.daemon(config), chaos.daemon(config)]
    with SyncClient(url, key_prefix=chaos.prefix) as jobs:
        handles = [
            jobs.enqueue("chaos", chaos.ledger_key, queue=queue, job_id=f"{queue}-{n}")
            for n in range(20)
            for queue in QUEUES
        ]
        pending = list(handles)

        def all_done() -> bool:
            nonlocal pending
            pending = [h for h in pending if h.status().value != "succeeded"]
            return not pending

        until(all_done, "every queue's jobs ran", guard=30)
    assert all(worker.running for worker in workers)
    exits = chaos.stop_all()
    with RedisCluster(host="127.0.0.1", port=cluster[0].port) as client:
        state = snapshot(client, chaos.prefix)  # type: ignore[arg-type]
    assert_invariants(chaos.entries(), state, Expect([h.id for h in handles], exits=exits))


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, list[RedisServer]]]:
    """A primary, one replica and three sentinels (redis-server --sentinel), down-after 500 ms."""
    no_delay = ["--repl-diskless-sync-delay", "0"]  # Redis 7 waits 5 s before a full sync
    primary = RedisServer(tmp_path / "primary", appendonly=True, extra_args=no_delay)
    primary.start()
    replica = RedisServer(
        tmp_path / "replica",
        appendonly=True,
        extra_args=[*no_delay, "--replicaof", "127.0.0.1", str(primary.port)],
    )
    replica.start()
    with replica.client() as conn:
        until(lambda: conn.info("replication")["master_link_status"] == "up", "replica synced")
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
                lambda: _safe(lambda: sentinel.execute_command("SENTINEL", "REPLICAS", "jobd")),
                "sentinel sees replica",
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


class Producers:
    """Threads enqueuing `chaos` jobs through a redis+sentinel:// URL until stopped, each call
    retried with the same id until acknowledged (what a careful producer does)."""

    def __init__(self, chaos: Chaos, url: str, threads: int = 2, **client: Any) -> None:
        self.chaos, self.url, self.client = chaos, url, client
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._produce, args=(n,), daemon=True) for n in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _produce(self, number: int) -> None:
        with SyncClient(self.url, key_prefix=self.chaos.prefix, **self.client) as jobs:
            for count in itertools.count():
                if self.stop.is_set():
                    return
                job_id = f"p{number}-{count}"
                while True:
                    try:
                        jobs.enqueue("chaos", self.chaos.ledger_key, job_id=job_id)
                        break
                    except Exception as error:  # noqa: BLE001 - retried with the same id
                        self.failures.append(type(error).__name__)
                        time.sleep(0.05)
                self.acknowledged.append(job_id)
                time.sleep(0.005)

    def finish(self, scenario: str = "") -> list[str]:
        """Stop producing; prints what was acknowledged and retried under `scenario`."""
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        if scenario:
            print(
                f"F17 {scenario}: {len(self.acknowledged)} acknowledged, "
                f"producer retries {Counter(self.failures)}"
            )
        return list(self.acknowledged)


def _sentinel_url(sentinels: list[int]) -> str:
    return "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in sentinels) + "/jobd"


def _promoted(sentinels: list[int], replica: RedisServer) -> None:
    with redis.Redis(port=sentinels[0]) as sentinel:
        until(
            lambda: sentinel.sentinel_get_master_addr_by_name("jobd")[1] == replica.port,
            "the replica is the primary",
        )


def _durable_fleet(
    chaos: Chaos, sentinels: list[int], primary: RedisServer
) -> tuple[list[Daemon], Producers]:
    """Two workers and producers on the Sentinels' URL, with enqueue_durability = "replica"."""
    url = _sentinel_url(sentinels)
    chaos.redis = primary  # where the test reads job states until the failover
    config = chaos.config(url, redis={"enqueue_durability": "replica"})
    workers = [chaos.daemon(config), chaos.daemon(config)]
    return workers, Producers(chaos, url, enqueue_durability="replica")


def _planned_failover(
    sentinels: list[int], primary: RedisServer, replica: RedisServer, producers: Producers
) -> int:
    """SENTINEL FAILOVER while `producers` enqueue; returns how many jobs they had acknowledged
    once the old primary was demoted (and lets 100 more through after that)."""
    until(lambda: len(producers.acknowledged) >= 100, "jobs flow")
    with redis.Redis(port=sentinels[0]) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", "jobd")
    _promoted(sentinels, replica)
    with primary.client() as conn:  # the role change closes its connections: retried
        until(
            lambda: _safe(lambda: conn.info("replication")["role"] == "slave"),
            "the old primary is demoted",
        )
    switched = len(producers.acknowledged)
    until(lambda: len(producers.acknowledged) >= switched + 100, "jobs flow after the failover")
    return switched


def _check_after_failover(
    chaos: Chaos,
    replica: RedisServer,
    acknowledged: list[str],
    workers: list[Daemon],
    **expect: Any,
) -> None:
    """Every acknowledged job ran on the new primary; the workers stayed up and exit cleanly."""
    chaos.redis = replica  # where job states are read now
    chaos.wait_done(acknowledged, guard=30)
    assert all(worker.running for worker in workers)
    exits = chaos.stop_all()
    with replica.client() as conn:
        state = snapshot(conn, chaos.prefix)
    chaos.redis = None  # the fixture closes the servers
    assert_invariants(chaos.entries(), state, Expect(acknowledged, exits=exits, **expect))


@pytest.mark.sentinel
def test_f17_a_planned_failover_loses_and_repeats_nothing(
    sentinel_setup: tuple[RedisServer, RedisServer, list[int]], chaos: Chaos
) -> None:
    """F17, SENTINEL FAILOVER while producers enqueue and two workers run jobs, all through a
    redis+sentinel:// URL. During a switchover the old primary still takes writes until Sentinel
    demotes it, and those writes vanish when it resyncs; with enqueue_durability = "replica" such
    an enqueue is not acknowledged (NotReplicated) and the producer sends it again, so every
    acknowledged job runs."""
    primary, replica, sentinels = sentinel_setup
    workers, producers = _durable_fleet(chaos, sentinels, primary)
    _planned_failover(sentinels, primary, replica, producers)
    acknowledged = producers.finish("planned")
    # a worker's claim or finish on the old primary after the switch is lost with it: that job
    # runs again on the new primary (at most once more)
    _check_after_failover(chaos, replica, acknowledged, workers, extra_starts=1)


@pytest.mark.sentinel
def test_f17_workers_and_producers_follow_when_the_primary_dies(
    sentinel_setup: tuple[RedisServer, RedisServer, list[int]], chaos: Chaos
) -> None:
    """F17, kill -9 of the primary mid-run: Sentinel promotes the replica, the workers follow
    without exiting, every enqueue acknowledged with enqueue_durability = "replica" runs; jobs
    the dead primary had handed out run again (their claims may not have reached the replica).
    The old primary comes back, as a restarted pod would, and Sentinel makes it a replica."""
    primary, replica, sentinels = sentinel_setup
    workers, producers = _durable_fleet(chaos, sentinels, primary)
    until(lambda: len(producers.acknowledged) >= 100, "jobs flow")
    primary.kill()
    _promoted(sentinels, replica)
    # with its one replica promoted, no replica confirms an enqueue: producers get NotReplicated
    # until the old primary is back, which Sentinel turns into the new primary's replica
    primary.start()
    seen = len(producers.acknowledged)
    until(lambda: len(producers.acknowledged) >= seen + 100, "jobs flow after the failover")
    acknowledged = producers.finish("kill -9")
    _check_after_failover(chaos, replica, acknowledged, workers, extra_starts=1)


@pytest.mark.sentinel
def test_f17_without_replica_durability_a_switchover_can_lose_what_it_acknowledged(
    sentinel_setup: tuple[RedisServer, RedisServer, list[int]], chaos: Chaos
) -> None:
    """F17 at the default enqueue_durability = "primary": the same planned failover. What the
    old primary acknowledged between the promotion and its demotion is gone (asynchronous
    replication, the documented limit): the number is measured and printed, not asserted. The
    workers stay up, and everything enqueued once the switch is over runs."""
    primary, replica, sentinels = sentinel_setup
    url = _sentinel_url(sentinels)
    chaos.redis = primary
    workers = [chaos.daemon(chaos.config(url))]
    producers = Producers(chaos, url)
    switched = _planned_failover(sentinels, primary, replica, producers)
    acknowledged = producers.finish()
    chaos.redis = replica
    chaos.wait_done(acknowledged[switched:], guard=30)
    statuses = dict(zip(acknowledged, chaos.statuses(acknowledged), strict=True))
    lost = [job_id for job_id, status in statuses.items() if status is None]
    print(f"F17 without replica durability: {len(lost)} of {len(acknowledged)} acknowledged lost")
    assert set(lost) <= set(acknowledged[:switched])  # only from the switchover window
    assert all(worker.running for worker in workers)
    chaos.redis = None  # the fixture closes the servers


@pytest.mark.cluster
def test_f18_limits_and_groups_hold_on_a_cluster(cluster: list[RedisServer], chaos: Chaos) -> None:
    """A concurrency limit and grouped jobs on a cluster: the limit's keys and the groups' share
    the queue's hash tag, so the claim checks and takes them in one script on the queue's node."""
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in cluster[:2])
    queue = QUEUES[0]
    config = chaos.config(
        url,
        worker={"queues": [queue]},
        limits={"api": {"concurrency": 3, "rate": "200/s"}},
        functions={"chaos": {"path": "tests.jobs_for_tests:chaos", "queue": queue,
                             "limits": ["api"]}},
    )  # fmt: skip
    workers = [chaos.daemon(config), chaos.daemon(config)]
    with SyncClient(url, key_prefix=chaos.prefix) as jobs:
        handles = [
            jobs.enqueue(
                "chaos",
                chaos.ledger_key,
                0.02,
                queue=queue,
                job_id=f"g{n}",
                group=f"tenant-{n % 3}",
            )
            for n in range(60)
        ]
        pending = list(handles)

        def all_done() -> bool:
            nonlocal pending
            pending = [h for h in pending if h.status().value != "succeeded"]
            return not pending

        until(all_done, "every limited job ran", guard=60)
    assert all(worker.running for worker in workers)
    exits = chaos.stop_all()
    entries = chaos.entries()
    running = top = 0
    for entry in sorted(entries, key=lambda e: e.time):
        running += 1 if entry.event == "start" else -1
        top = max(top, running)
    assert top <= 3
    with RedisCluster(host="127.0.0.1", port=cluster[0].port) as client:
        state = snapshot(client, chaos.prefix)  # type: ignore[arg-type]
    assert_invariants(entries, state, Expect([h.id for h in handles], exits=exits))
