"""Workflows on Redis Cluster (`-m cluster`): a graph over queues on different primaries, which one
script cannot store, is stored held and released (jobd.client.flows._store_held). It runs in
order; a missing parent stores nothing in any queue; a producer that dies before the commit
leaves nothing that runs, and a worker discards what it stored."""

from __future__ import annotations

from typing import Any

import pytest
from redis.cluster import RedisCluster

from jobd.client import InvalidJobOption, JobStatus, SyncClient
from jobd.client.operations import Command
from jobd.redis.keys import QueueKeys
from tests.chaos.conftest import Chaos, until
from tests.chaos.test_topologies import QUEUES, cluster, owners
from tests.chaos.test_workflows import check_order
from tests.support.checker import Expect, assert_invariants, snapshot
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until

__all__ = ["cluster"]  # the fixture, used by name

pytestmark = pytest.mark.cluster


def url_of(nodes: list[RedisServer]) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in nodes[:2])


def test_a_graph_over_queues_of_every_primary_runs_in_order(
    cluster: list[RedisServer], chaos: Chaos
) -> None:
    assert owners(cluster) == {node.port for node in cluster}
    url = url_of(cluster)
    config = chaos.config(url, worker={"queues": QUEUES[:5]})
    workers = [chaos.daemon(config), chaos.daemon(config)]
    key = chaos.ledger_key
    with SyncClient(url, key_prefix=chaos.prefix) as jobs:
        outside = jobs.enqueue("chaos", key, queue=QUEUES[4], job_id="outside")
        with jobs.flow() as flow:
            top = flow.enqueue("chaos", key, 0.05, queue=QUEUES[0], job_id="top")
            left = flow.enqueue("chaos", key, queue=QUEUES[1], job_id="left", after=[top])
            right = flow.enqueue("chaos", key, queue=QUEUES[2], job_id="right", after=[top])
            bottom = flow.enqueue(
                "chaos", key, queue=QUEUES[3], job_id="bottom", after=[left, right, outside]
            )
        handles = [outside, top, left, right, bottom]
        until(lambda: bottom.status() == JobStatus.SUCCEEDED, "the graph ran", guard=60)
        assert all(handle.status() == JobStatus.SUCCEEDED for handle in handles)
    exits = chaos.stop_all()
    entries = chaos.entries()
    check_order(
        entries, {"left": ["top"], "right": ["top"], "bottom": ["left", "right", "outside"]}
    )
    assert all(worker.returncode == 0 for worker in workers)
    with RedisCluster(host="127.0.0.1", port=cluster[0].port) as client:
        state = snapshot(client, chaos.prefix)  # type: ignore[arg-type]
    assert_invariants(entries, state, Expect([h.id for h in handles], exits=exits))


def held_keys(client: Any, prefix: str) -> list[str]:
    found = []
    for queue in QUEUES[:4]:
        keys = QueueKeys(prefix, queue)
        for name in ("a", "b", "c"):
            if client.exists(keys.job(name)):
                found.append(keys.job(name))
        if client.zcard(keys.gated) or client.zcard(keys.waiting):
            found.append(keys.gated)
    return found


def test_a_missing_parent_stores_nothing_in_any_queue(
    cluster: list[RedisServer], chaos: Chaos
) -> None:
    url = url_of(cluster)
    with SyncClient(url, key_prefix=chaos.prefix) as jobs:
        with (
            pytest.raises(InvalidJobOption, match="after: job ghost not found"),
            jobs.flow() as flow,
        ):
            a = flow.enqueue("echo", queue=QUEUES[0], job_id="a")
            flow.enqueue("echo", queue=QUEUES[1], job_id="b", after=[a])
            flow.enqueue(
                "echo", queue=QUEUES[2], job_id="c", after=[jobs.job("ghost", queue=QUEUES[3])]
            )
        assert held_keys(jobs.redis, chaos.prefix) == []


async def test_a_flow_whose_producer_died_before_the_commit_never_runs_and_is_discarded(
    cluster: list[RedisServer], chaos: Chaos, ledger: Any
) -> None:
    from tests.support.worker import running_worker, settings_for

    url = url_of(cluster)
    with SyncClient(url, key_prefix=chaos.prefix) as jobs:
        flow = jobs.flow()
        a = flow.enqueue("record", chaos.ledger_key, queue=QUEUES[0], job_id="a")
        flow.enqueue("record", chaos.ledger_key, queue=QUEUES[1], job_id="b", after=[a])
        operation = flow.operation()
        request = next(operation)
        while not isinstance(request, Command):  # the producer dies just before its commit
            request = operation.send(jobs._perform(request))
        operation.close()
        assert len(held_keys(jobs.redis, chaos.prefix)) >= 2  # stored, held
        settings = settings_for(url, chaos.prefix, worker={"queues": QUEUES[:2]})
        async with running_worker(settings) as worker:
            worker.resolver.held_ms = 0
            await async_wait_until(
                lambda: held_keys(jobs.redis, chaos.prefix) == [], message="the flow discarded"
            )
        assert chaos.entries() == []  # nothing of it ran
        gate_key = request.args[1]
        assert jobs.redis.get(gate_key) == b"abandoned"  # a late commit would fail
