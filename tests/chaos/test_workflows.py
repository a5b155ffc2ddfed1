"""Workflows under faults (docs/workflows.md): a worker killed with SIGKILL while parents run,
replies of the scripts that end jobs and tell dependants lost after they ran, and Redis killed
and restarted with AOF while a graph is half done. In each, every child starts only after its
parents' runs ended, no child runs more often than its faults explain, and the graph ends. Each
ends with the invariant checker, as every chaos scenario does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from jobd.client import SyncClient
from jobd.errors import RedisUnavailable
from jobd.redis.scripts import SCRIPTS
from tests.chaos.conftest import Chaos, until
from tests.chaos.test_redis_faults import AOF_EVERY_WRITE
from tests.support.checker import Entry, Expect
from tests.support.proxy import ChaosProxy


def build_graph(
    chaos: Chaos, width: int, seconds: float, url: str | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """`width` parents, a child after each, and one job after every child: all `chaos` jobs
    that record their runs. Returns every id and each job's parents."""
    parents: dict[str, list[str]] = {}
    with SyncClient(url or chaos.url, key_prefix=chaos.prefix) as jobs, jobs.flow() as flow:
        children = []
        for n in range(width):
            parent = flow.enqueue("chaos", chaos.ledger_key, seconds, job_id=f"p{n}")
            child = flow.enqueue("chaos", chaos.ledger_key, 0.01, job_id=f"c{n}", after=[parent])
            parents[child.id] = [parent.id]
            children.append(child)
        final = flow.enqueue("chaos", chaos.ledger_key, 0.0, job_id="final", after=children)
        parents[final.id] = [child.id for child in children]
    ids = [f"p{n}" for n in range(width)] + [f"c{n}" for n in range(width)] + ["final"]
    return ids, parents


def wait_settled(chaos: Chaos) -> None:
    """Until the workers have settled every ended job of the graph (told its dependants, detached
    it from its parents): the graph's keys are then gone or expiring."""

    def settled() -> bool:
        with chaos.client() as connection:
            return int(connection.zcard(f"{chaos.prefix}:{{default}}:settled")) == 0

    until(settled, "every ended job settled")


def check_order(entries: list[Entry], parents: dict[str, list[str]]) -> None:
    """Every run of a child started after the end of its parents' last run."""
    ends: dict[str, float] = {}
    for entry in entries:
        if entry.event == "end":
            ends[entry.job_id] = max(ends.get(entry.job_id, 0.0), entry.time)
    for entry in entries:
        if entry.event == "start" and entry.job_id in parents:
            for parent in parents[entry.job_id]:
                assert parent in ends, f"{entry.job_id} started, its parent {parent} never ended"
                assert entry.time >= ends[parent], f"{entry.job_id} started before {parent} ended"


def test_a_worker_killed_while_parents_run_releases_each_child_once_they_ended(
    chaos: Chaos,
) -> None:
    chaos.start_redis()
    config = chaos.config()
    a = chaos.daemon(config, name="a")
    ids, parents = build_graph(chaos, 30, 0.3)
    until(lambda: len(chaos.starts(a.pid)) >= 5, "parents running on a")
    killed_at = chaos.kill(a)
    b = chaos.daemon(config, name="b")
    chaos.wait_done(ids)
    wait_settled(chaos)
    exits = chaos.stop_all()
    entries = chaos.entries()
    chaos.check(Expect(ids, killed={a.pid}, stopped={a.pid: killed_at}, exits=exits))
    check_order(entries, parents)
    # on b, which nobody killed, every job that started there ran once
    on_b = [e.job_id for e in entries if e.event == "start" and e.pid == b.pid]
    assert len(on_b) == len(set(on_b)) and "final" in on_b


@pytest.fixture
def proxy(chaos: Chaos) -> Iterator[ChaosProxy]:
    server = chaos.start_redis()
    with ChaosProxy("127.0.0.1", server.port) as chaos_proxy:
        yield chaos_proxy


def test_lost_replies_of_the_graph_scripts_release_each_child_once(
    chaos: Chaos, proxy: ChaosProxy
) -> None:
    names = ("finish", "resolve", "detach", "settled", "flow")
    shas = {SCRIPTS[name].sha.encode(): name for name in names}
    lock = threading.Lock()
    seen = dict.fromkeys(names, 0)
    dropped = dict.fromkeys(names, 0)

    def lose_some(request: bytes) -> bool:
        """Lose the reply of every fourth call of each script (from its second on)."""
        at = request.find(b"EVALSHA")
        name = next((n for sha, n in shas.items() if sha in request[at : at + 120]), None)
        if at < 0 or name is None:
            return False
        with lock:
            seen[name] += 1
            if seen[name] % 4 != 2:
                return False
            dropped[name] += 1
            return True

    proxy.set_mode("drop_reply", predicate=lose_some)
    config = chaos.config(proxy.url)
    chaos.daemon(config)
    graphs = []
    for _ in range(20):  # a flow whose reply was lost is sent again: the same ids
        try:
            graphs.append(build_graph(chaos, 40, 0.01, url=proxy.url))
            break
        except RedisUnavailable:
            continue
    (ids, parents), *_ = graphs
    chaos.wait_done(ids)
    wait_settled(chaos)
    proxy.set_mode("pass")
    exits = chaos.stop_all()
    print("dropped replies:", dropped)
    assert dropped["finish"] and dropped["resolve"], dropped
    chaos.check(Expect(ids, exits=exits))
    check_order(chaos.entries(), parents)
    assert len(chaos.starts()) == len(ids)  # no job ran twice, no child released twice


def test_redis_restarted_with_aof_while_a_graph_is_half_done(chaos: Chaos) -> None:
    server = chaos.start_redis(**AOF_EVERY_WRITE)
    config = chaos.config()
    workers = [chaos.daemon(config) for _ in range(2)]
    ids, parents = build_graph(chaos, 60, 0.2)
    until(lambda: len(chaos.starts()) >= 30, "half of the parents running")
    server.kill()
    time.sleep(1.0)  # the outage's length: the fault, not a wait for a result
    server.restart()
    chaos.wait_done(ids)
    wait_settled(chaos)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits))
    check_order(chaos.entries(), parents)
    assert all(worker.returncode in (0, None) for worker in workers)
