"""Network faults between the workers and Redis, through the in-process chaos proxy
(docs/reliability.md §5.2): reset storms (F11), replies lost after the command ran (F12), a half-open
network shorter (F13) and longer (F14) than the lease, and a slow Redis (F25)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from jobd.client import SyncClient
from jobd.errors import RedisUnavailable
from jobd.redis.scripts import SCRIPTS
from tests.chaos.conftest import GUARD, LEASE, LONG, Chaos, until
from tests.support.checker import Expect
from tests.support.daemon import Daemon
from tests.support.proxy import ChaosProxy


@pytest.fixture
def proxy(chaos: Chaos) -> Iterator[ChaosProxy]:
    server = chaos.start_redis()
    with ChaosProxy("127.0.0.1", server.port) as chaos_proxy:
        yield chaos_proxy


def clean_log(daemon: Daemon) -> None:
    log = daemon.log_text()
    for text in ("Traceback", "never retrieved", "Unclosed", "worker died"):
        assert text not in log, f"{text!r} in the log of {daemon!r}"


def test_f11_connection_reset_storm_loses_and_repeats_nothing(
    chaos: Chaos, proxy: ChaosProxy
) -> None:
    config = chaos.config(proxy.url)
    workers = [chaos.daemon(config) for _ in range(2)]
    ids = chaos.enqueue(1000, "chaos", 0.02, producers=2)
    rng = random.Random(chaos.rng.randrange(2**32))
    resets = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 0.5))  # the storm's rhythm: the fault schedule
        resets += proxy.reset()
    chaos.wait_done(ids)
    assert resets > 20
    counted = chaos.succeeded(workers, len(ids))
    for worker in workers:
        assert worker.running
        clean_log(worker)
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits, succeeded_metric=counted))


def test_f12_replies_lost_after_the_scripts_ran_are_replayed_safely(
    chaos: Chaos, proxy: ChaosProxy
) -> None:
    shas = {SCRIPTS[name].sha.encode(): name for name in ("claim", "finish", "renew", "enqueue")}
    rng = random.Random(chaos.rng.randrange(2**32))
    lock = threading.Lock()
    dropped: dict[str, int] = dict.fromkeys(shas.values(), 0)
    seen: dict[str | None, int] = {}

    def lose_some(request: bytes) -> bool:
        at = request.find(b"EVALSHA")  # an idle worker's claim follows its BLPOP in one packet
        if at < 0:
            return False
        name = next((n for sha, n in shas.items() if sha in request[at : at + 120]), None)
        seen[name] = seen.get(name, 0) + 1
        with lock:  # renewals are rare (3 a second per worker): lose every third
            lose = seen[name] % 3 == 2 if name == "renew" else rng.random() < 0.05
            if name is None or not lose:
                return False
            dropped[name] += 1
            return True

    proxy.set_mode("drop_reply", predicate=lose_some)
    config = chaos.config(proxy.url)
    workers = [chaos.daemon(config) for _ in range(2)]
    created: list[bool] = []
    ids = [f"j{n}" for n in range(400)]
    with SyncClient(proxy.url, key_prefix=chaos.prefix) as jobs:
        for job_id in ids:
            for _ in range(10):  # a call that raised is re-sent with the same id ("maybe" ids)
                try:
                    job = jobs.enqueue("chaos", chaos.ledger_key, 0.05, job_id=job_id)
                except RedisUnavailable:
                    continue
                created.append(job.created)
                break
    chaos.wait_done(ids)
    counted = chaos.succeeded(workers, len(ids))
    proxy.set_mode("pass")
    print("dropped replies:", dropped, "seen:", seen)
    assert all(dropped.values()), dropped  # every kind of call lost a reply at least once
    # a replayed enqueue finds the job it stored: created == False, nothing stored twice
    assert 0 < created.count(False) <= dropped["enqueue"]
    for worker in workers:
        clean_log(worker)
        assert "claimed but never received" not in worker.log_text()  # no orphaned claim
        assert "lease lost" not in worker.log_text()
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits, succeeded_metric=counted))
    assert len(chaos.starts()) == len(ids)  # no job claimed twice


def test_f13_half_open_network_shorter_than_the_lease_keeps_every_lease(
    chaos: Chaos, proxy: ChaosProxy
) -> None:
    a = chaos.daemon(chaos.config(proxy.url, name="a.toml"), name="a")
    b = chaos.daemon(chaos.config(), name="b")  # direct: its reaper would take a's jobs
    ids = chaos.enqueue(200, "chaos", 1.0)
    until(lambda: len(chaos.starts(a.pid)) >= 20, "a runs jobs")
    for _ in range(5):
        proxy.set_mode("blackhole")
        time.sleep(LEASE / 2)  # the partition's length: the fault itself
        proxy.set_mode("pass")
        time.sleep(LEASE / 2)
    chaos.wait_done(ids)
    for worker in (a, b):
        clean_log(worker)
        assert "lease lost" not in worker.log_text()
        assert "is gone (no heartbeat)" not in worker.log_text()
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits))


def test_f14_partitioned_zombie_cannot_store_over_the_new_owner(
    chaos: Chaos, proxy: ChaosProxy
) -> None:
    a = chaos.daemon(chaos.config(proxy.url, name="a.toml"), name="a")
    (long_job,) = chaos.enqueue(1, "chaos", 6.0)  # still running when the partition heals
    (short_job,) = chaos.enqueue(1, "chaos", 1.5, start=1)
    until(lambda: len(chaos.starts(a.pid)) == 2, "both jobs run on a")
    b = chaos.daemon(chaos.config(), name="b")
    proxy.set_mode("blackhole")
    cut = time.monotonic()
    try:
        until(lambda: len(chaos.starts(b.pid)) == 2, "b takes both jobs over", GUARD)
        time.sleep(max(0.0, cut + 2.5 - time.monotonic()))  # a 2.5 s partition at least
    finally:
        proxy.set_mode("pass")
    chaos.wait_done([long_job, short_job])
    until(lambda: chaos.metric(a, "jobd_jobs_finished_total", outcome="lost") == 2, "a: 2 lost")
    log = a.log_text()
    assert f"job {short_job} (chaos): lease lost before its outcome was stored" in log
    assert f"job {long_job}: lease lost (another worker owns it now); cancelled" in log
    exits = chaos.stop_all()
    jobs = [long_job, short_job]
    chaos.check(Expect(jobs, zombies=set(jobs), lost=dict.fromkeys(jobs, 1), exits=exits))
    # the long job's zombie run was cancelled before its end; the short one's ended, unstored
    assert [e.pid for e in chaos.entries() if e.event == "end" and e.job_id == long_job] == [b.pid]


@pytest.mark.parametrize(
    "jobs",
    [pytest.param(200, id="ci"), pytest.param(3000, id="long", marks=LONG)],
)
def test_f25_slow_redis_slows_jobs_down_and_nothing_else(
    chaos: Chaos, proxy: ChaosProxy, jobs: int
) -> None:
    config = chaos.config(proxy.url)
    workers = [chaos.daemon(config) for _ in range(2)]
    proxy.set_mode("delay", delay_ms=200)  # 400 ms round trips from now on, every connection
    ids = chaos.enqueue(jobs, "chaos", 0.5)
    chaos.wait_done(ids, guard=GUARD + jobs / 20)
    lost = sum(chaos.metric(w, "jobd_jobs_finished_total", outcome="lost") for w in workers)
    for worker in workers:
        clean_log(worker)
        for text in ("lease lost", "is gone (no heartbeat)", "redis unavailable"):
            assert text not in worker.log_text(), text
    exits = chaos.stop_all()
    chaos.check(Expect(ids, exits=exits))
    assert lost == 0
