"""A reference model of the Lua scripts, and a Hypothesis state machine that runs the real scripts
against a real redis-server next to it (docs/reliability.md §5.4).

The machine plays producers, an operator and two worker slots through the same wrappers jobd uses
(`Client`, `Store`, the admin scripts): enqueue, claim, renew, finish, retry, requeue (drain),
abort, crash (a worker forgets its tokens and its heartbeat expires), partition (the heartbeat
expires, the worker keeps its tokens: a zombie), reap, promote, observe, cron, and the dead-letter
retry and purge. After every step the whole queue in Redis is compared with the model, and the
invariants are checked: each job in exactly one state, a running job's token belongs to the worker
that owns it, a stale token changes nothing, no job disappears unless purged, claims come in
priority then FIFO order, `tries` and `lost` change only as the model says.

With `replay`, every script call is sent a second time with the same arguments (what redis-py does
after a lost reply, docs/reliability.md finding 3) and Redis must hold exactly the same data as after
the first: only the heartbeat times and the queue's activity clock may move.

Time: leases are long (60 s) so that nothing expires by itself during a run; a crash or partition
expires a heartbeat by hand, and the queue's activity record is set as if workers had been touching
it for long, so `reap` acts at once. Delays are "now" or an hour; the reaper's staggered requeues
are a few hundred ms, and the model reads their due times from the scripts' replies and hashes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis
import redis.asyncio
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from jobd.client import Client
from jobd.model import ErrorInfo, encode_error
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_async
from jobd.worker.runner import ClaimedJob
from jobd.worker.store import ABORTED_KEEP_MS, Finish, Store

QUEUE = "default"
LEASE_MS = 60_000
MAX_LOST = 2
KEEP_MS = 3_600_000
FAR_MS = 3_600_000
JOB_IDS = ("a", "b", "c", "d", "e")
CRON_TICKS = (60_000, 120_000, 180_000)


@dataclass
class Job:
    """What the model believes about one job."""

    id: str
    priority: int
    seq: int
    status: str  # queued | scheduled | running | succeeded | failed | aborted
    function: str = "echo"
    tries: int = 0
    lost: int = 0
    token: str | None = None
    """The hash's token field (it outlives the run: finish and retry keep it)."""
    owner: str | None = None
    """The worker whose owned set holds the job (while running)."""
    abort: bool = False
    due: int | None = None
    """For scheduled jobs: due time on the Redis clock (ms)."""


@dataclass
class Slot:
    """A worker process: its Store, and the runs it believes it holds."""

    id: str
    store: Store
    held: dict[str, ClaimedJob] = field(default_factory=dict)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class ScriptsModel(RuleBasedStateMachine):
    """See the module docstring. `url` is set by the test; `replay` by the replay test."""

    url: ClassVar[str] = ""
    replay: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.prefix = "p" + uuid.uuid4().hex[:10]
        self.keys = QueueKeys(self.prefix, QUEUE)
        self.admin = redis.Redis.from_url(self.url)
        self.connection = self.runner.run(self._connect())
        self.client = Client(self.url, key_prefix=self.prefix, redis_client=self.connection)
        self.jobs: dict[str, Job] = {}
        self.seq = 0
        self.slots: list[Slot] = []
        self.expired: set[str] = set()
        """Workers whose heartbeat has expired (crashed or partitioned), not yet reaped."""
        self.heartbeats: set[str] = set()
        """Workers in the queue's workers ZSET."""
        self.cron_last = 0
        self.cron_previous = 0
        self.cron_fired_by = ""
        self.generation = 0
        self.steps: list[str] = []

    async def _connect(self) -> redis.asyncio.Redis:
        return redis.asyncio.Redis.from_url(self.url)

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def teardown(self) -> None:
        self.run(self.connection.aclose())
        self.runner.close()
        self.admin.close()

    # -- helpers --------------------------------------------------------------------------------

    def new_slot(self) -> Slot:
        self.generation += 1
        worker_id = f"w{self.generation}"
        store = Store(
            self.connection,
            prefix=self.prefix,
            worker_id=worker_id,
            lease_ms=LEASE_MS,
            max_payload_bytes=1_048_576,
        )
        return Slot(worker_id, store)

    def server_ms(self) -> int:
        seconds, microseconds = self.admin.time()
        return int(seconds) * 1000 + int(microseconds) // 1000

    def snapshot(self) -> dict[str, Any]:
        """Every key of the queue and its value, except what moves with the clock alone."""
        keys = sorted(self.admin.scan_iter(f"{self.prefix}:*", count=1000))
        pipe = self.admin.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = pipe.execute()
        pipe = self.admin.pipeline(transaction=False)
        for key, kind in zip(keys, types, strict=True):
            if kind == b"hash":
                pipe.hgetall(key)
            elif kind == b"zset":
                pipe.zrange(key, 0, -1, withscores=True)
            elif kind == b"set":
                pipe.smembers(key)
            elif kind == b"list":
                pipe.lrange(key, 0, -1)
            else:
                pipe.get(key)
        values = pipe.execute()
        state: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=True):
            name = key.decode()
            if name == self.keys.activity:
                continue  # its 'last' is the clock of the last call
            if name == self.keys.workers:
                value = sorted(member for member, _ in value)  # heartbeat times move
            elif isinstance(value, set):
                value = sorted(value)
            state[name] = value
        return state

    def call(self, name: str, make: Any) -> Any:
        """Run `make()` (a coroutine factory), and with `replay` run it again: same data."""
        self.steps.append(name)
        reply = self.run(make())
        if self.replay:
            before = self.snapshot()
            again = self.run(make())
            after = self.snapshot()
            assert after == before, f"replaying {name} changed Redis:\n{_diff(before, after)}"
            self.replayed(name, reply, again)
        return reply

    def replayed(self, name: str, first: Any, again: Any) -> None:
        """What a replayed call answers, given the first answer."""
        if name == "enqueue":
            assert [ref.created for ref in again] == [False] * len(again)
        elif name == "claim":
            assert [job.id for job in again.jobs] == [job.id for job in first.jobs]
        elif name in ("finish", "requeue"):
            verdicts = first if isinstance(first, list) else [first]
            replies = again if isinstance(again, list) else [again]
            for verdict, reply in zip(verdicts, replies, strict=True):
                assert reply in (("replayed", "stale") if verdict != "stale" else ("stale",))
        elif name == "retry":
            assert again[0] in (("replayed",) if first[0] != "stale" else ("stale",))
        elif name == "abort":
            assert again == first or (first == "aborted" and again == "aborted")
        elif name == "reap":
            assert again.requeued == [] and again.dead == [] and again.workers == []
        elif name in ("dead_retry", "dead_purge"):
            assert _decode(again[0]) == []
        elif name == "cron":
            assert again == first

    def held(self) -> bool:
        return any(slot.held for slot in self.slots)

    def pick(self, pick: int) -> tuple[Slot, ClaimedJob]:
        """One of the runs some worker believes it holds (valid or, after a reap, stale)."""
        pairs = sorted(
            (index, job_id) for index, slot in enumerate(self.slots) for job_id in slot.held
        )
        index, job_id = pairs[pick % len(pairs)]
        slot = self.slots[index]
        return slot, slot.held[job_id]

    def release(self, job: Job) -> None:
        """The job leaves 'running' (its owned-set member goes with it)."""
        job.owner = None

    def make_ready(self, job: Job) -> None:
        job.status = "queued"
        job.due = None

    # -- rules ----------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.slots = [self.new_slot(), self.new_slot()]
        # As if workers had touched the queue for long: reap may act at once (no grace).
        self.admin.hset(self.keys.activity, mapping={"last": self.server_ms(), "since": 0})

    @rule(
        job_id=st.sampled_from(JOB_IDS),
        far=st.sampled_from([False, False, True]),
        priority=st.sampled_from([-1, 0, 1]),
    )
    def enqueue(self, job_id: str, far: bool, priority: int) -> None:
        delay = FAR_MS / 1000 if far else None
        refs = self.call(
            "enqueue",
            lambda: self.client.run(
                self.client.enqueue_operation(
                    [("echo", (job_id,), {})],
                    [job_id],
                    queue=QUEUE,
                    delay=delay,
                    at=None,
                    priority=priority,
                    max_tries=None,
                    timeout=None,
                    expires=None,
                    strict=False,
                )
            ),
        )
        (ref,) = refs
        assert ref.created == (job_id not in self.jobs)
        if ref.created:
            self.seq += 1
            job = Job(job_id, priority, self.seq, "scheduled" if far else "queued")
            if far:
                due = self.admin.zscore(self.keys.scheduled, job_id)
                assert due is not None
                job.due = int(due)
            self.jobs[job_id] = job

    @rule(index=st.integers(0, 1), count=st.integers(1, 3))
    def claim(self, index: int, count: int) -> None:
        slot = self.slots[index]
        store = slot.store
        nonces: list[int] = []

        async def claim_once() -> Any:
            if nonces:  # a replay: the same nonce again, as after a lost reply
                store._pending_nonce[QUEUE] = nonces[0]
            result = await store.claim(QUEUE, count)
            record = await self.connection.get(self.keys.claim(slot.id))
            nonces.append(int(record.split(b"\n", 1)[0]))
            return result

        claim = self.call("claim", claim_once)
        now = claim.now_ms
        self.heartbeats.add(slot.id)
        self.expired.discard(slot.id)
        for job in self.jobs.values():
            if job.status == "scheduled" and job.due is not None and job.due <= now:
                self.make_ready(job)
        ready = sorted(
            (job for job in self.jobs.values() if job.status == "queued"),
            key=lambda job: (-job.priority, job.seq),
        )
        expected = ready[:count]
        assert [job.id for job in claim.jobs] == [job.id for job in expected], "claim order"
        for job, claimed in zip(expected, claim.jobs, strict=True):
            job.status = "running"
            job.tries += 1
            job.token = claimed.token
            job.owner = slot.id
            assert claimed.token.startswith(f"{slot.id}:")
            assert (claimed.tries, claimed.lost) == (job.tries, job.lost)
            slot.held[job.id] = claimed
        assert claim.expired == [] and claim.dead == []

    @precondition(held)
    @rule(pick=st.integers(0, 100), action=st.integers(0, 4))
    def settle(self, pick: int, action: int) -> None:
        """A worker ends a run it holds: finish (3 outcomes), retry, or requeue by a drain."""
        if action < 3:
            self.finish(pick, action)
        elif action == 3:
            self.retry(pick, far=pick % 2 == 1)
        else:
            self.requeue(pick)

    def finish(self, pick: int, outcome: int) -> None:
        slot, claimed = self.pick(pick)
        status, value, dead = [
            ("succeeded", b'"ok"', False),
            ("failed", encode_error(ErrorInfo("ValueError", "boom")), True),
            ("aborted", encode_error(ErrorInfo("JobAborted", "aborted")), False),
        ][outcome]
        (verdict,) = self.call(
            "finish",
            lambda: slot.store.finish(QUEUE, [Finish(claimed, status, value, KEEP_MS, dead)]),
        )
        del slot.held[claimed.id]
        job = self.jobs.get(claimed.id)
        if job is None or job.token != claimed.token:
            assert verdict == "stale"
            return
        if job.status != "running":
            assert verdict == "replayed"
            return
        assert verdict == "ok"
        job.status = status
        job.abort = False
        self.release(job)

    def retry(self, pick: int, far: bool) -> None:
        slot, claimed = self.pick(pick)
        delay = FAR_MS if far else 0
        verdict, due = self.call(
            "retry",
            lambda: slot.store.retry(claimed, delay, ErrorInfo("ValueError", "again")),
        )
        del slot.held[claimed.id]
        job = self.jobs.get(claimed.id)
        if job is None or job.token != claimed.token:
            assert verdict == "stale"
            return
        if job.status != "running":
            assert verdict == "replayed"
            return
        assert verdict == "ok"
        job.status = "scheduled"
        job.due = due
        self.release(job)

    def requeue(self, pick: int) -> None:
        slot, claimed = self.pick(pick)
        verdict = self.call("requeue", lambda: slot.store.requeue(claimed))
        del slot.held[claimed.id]
        job = self.jobs.get(claimed.id)
        if job is None or job.token != claimed.token:
            assert verdict == "stale"
            return
        if job.status != "running":
            assert verdict == "replayed"
            return
        job.token = None
        self.release(job)
        if job.abort:
            assert verdict == "aborted"
            job.status = "aborted"  # the abort flag stays on the (terminal) job
            return
        assert verdict == "ok"
        job.tries -= 1  # a drain does not charge the try
        self.make_ready(job)

    @rule(index=st.integers(0, 1))
    def renew(self, index: int) -> None:
        slot = self.slots[index]
        held = list(slot.held.values())
        renewal = self.call("renew", lambda: slot.store.renew(QUEUE, held))
        self.heartbeats.add(slot.id)
        self.expired.discard(slot.id)
        expected_lost = set()
        expected_aborts = set()
        for claimed in held:
            job = self.jobs.get(claimed.id)
            if job is None or job.status != "running" or job.token != claimed.token:
                expected_lost.add((claimed.id, claimed.token))
            elif job.abort:
                expected_aborts.add(claimed.id)
        assert set(renewal.lost) == expected_lost
        assert set(renewal.aborts) == expected_aborts
        assert renewal.released == []
        for job_id, _ in renewal.lost:
            del slot.held[job_id]  # the worker cancels those runs

    def abort(self, job_id: str) -> None:
        keys = self.keys
        reply = self.call(
            "abort",
            lambda: run_async(
                self.connection,
                "abort",
                [keys.job(job_id), keys.queued, keys.scheduled, keys.done(job_id)],
                [job_id, keys.aborts, ABORTED_KEEP_MS],
            ),
        )
        reply = _decode(reply)
        job = self.jobs.get(job_id)
        if job is None:
            assert reply == "not_found"
        elif job.status in ("queued", "scheduled"):
            assert reply == "aborted"
            job.status = "aborted"
            job.due = None
        elif job.status == "running":
            assert reply == "requested"
            job.abort = True
        else:
            assert reply == job.status

    @rule(index=st.integers(0, 1), kind=st.integers(0, 3))
    def fault(self, index: int, kind: int) -> None:
        """A worker crashes or is cut off (its heartbeat expires), or a live one reaps (twice as
        often)."""
        if kind < 2:
            self.reap(index)
        else:
            self.crash(index, forget=kind == 3)

    def crash(self, index: int, forget: bool) -> None:
        """The worker's heartbeat expires: a crash (it forgets its runs and a new process takes
        its place) or a partition or pause (it keeps them: a zombie once reaped)."""
        slot = self.slots[index]
        self.steps.append("crash" if forget else "partition")
        if slot.id in self.heartbeats:
            self.admin.zadd(self.keys.workers, {slot.id: 0})
            self.expired.add(slot.id)
        if forget:
            self.slots[index] = self.new_slot()

    def reap(self, index: int) -> None:
        slot = self.slots[index]
        reaped = self.call("reap", lambda: slot.store.reap(QUEUE, MAX_LOST))
        assert set(reaped.workers) == self.expired
        expected_requeued: set[str] = set()
        expected_dead: set[tuple[str, str]] = set()
        for job in self.jobs.values():
            if job.status != "running" or job.owner not in self.expired:
                continue
            job.lost += 1
            job.token = None
            self.release(job)
            if job.abort:
                job.status = "aborted"  # the abort flag stays on the (terminal) job
            elif job.lost >= MAX_LOST:
                job.status = "failed"
                expected_dead.add((job.id, job.function))
            else:
                expected_requeued.add(job.id)
        assert set(reaped.requeued) == expected_requeued
        assert set(reaped.dead) == expected_dead
        for position, job_id in enumerate(reaped.requeued):
            job = self.jobs[job_id]
            if position == 0:
                self.make_ready(job)
            else:  # staggered through 'scheduled'
                job.status = "scheduled"
                due = self.admin.hget(self.keys.job(job_id), "due_at")
                assert due is not None
                job.due = int(due)
        self.heartbeats -= self.expired
        self.expired = set()

    @rule(kind=st.integers(0, 3), job_id=st.sampled_from(JOB_IDS), tick=st.sampled_from(CRON_TICKS))
    def housekeeping(self, kind: int, job_id: str, tick: int) -> None:
        """What else touches a queue: promote, a result waiter (observe), a cron tick, and time:
        the kept record of a finished job expires (its id is free again)."""
        if kind == 0:
            self.promote()
        elif kind == 1:
            self.observe(job_id)
        elif kind == 2:
            self.cron(tick)
        else:
            self.expire()

    def expire(self) -> None:
        ended = sorted(
            job.id for job in self.jobs.values() if job.status in ("succeeded", "aborted")
        )
        if ended:
            self.steps.append("expire")
            self.admin.delete(self.keys.job(ended[0]), self.keys.done(ended[0]))
            del self.jobs[ended[0]]

    def promote(self) -> None:
        keys = self.keys
        before = self.server_ms()
        self.call(
            "promote",
            lambda: run_async(
                self.connection,
                "promote",
                [keys.scheduled, keys.queued, keys.wake, keys.job_prefix],
                [1000],
            ),
        )
        scheduled = set(_decode(self.admin.zrange(keys.scheduled, 0, -1)))
        for job in self.jobs.values():
            if job.status != "scheduled" or job.due is None:
                continue
            if job.due <= before or job.id not in scheduled:
                self.make_ready(job)

    def observe(self, job_id: str) -> None:
        state = self.call(
            "observe",
            lambda: run_async(self.connection, "observe", [self.keys.job(job_id)], []),
        )
        job = self.jobs.get(job_id)
        if job is None:
            assert state is None
        else:
            assert _decode(state[0]) == job.status

    def cron(self, tick: int) -> None:
        slot = self.slots[0]
        job_id = f"cron:c:{tick // 1000}"
        payload = b'{"v":1,"args":[],"kwargs":{}}'
        previous = self.call(
            "cron",
            lambda: slot.store.fire_cron(
                QUEUE,
                "c",
                tick_ms=tick,
                job_id=job_id,
                function="echo",
                payload=payload,
                priority=0,
                keep_ms=KEEP_MS,
            ),
        )
        if tick == self.cron_last and slot.id == self.cron_fired_by:
            assert previous == self.cron_previous  # its own tick again: answered as before
            return
        if tick <= self.cron_last:
            assert previous is None  # fired already (or passed over)
            return
        assert previous == self.cron_last
        self.cron_previous, self.cron_last, self.cron_fired_by = self.cron_last, tick, slot.id
        if job_id not in self.jobs:
            self.seq += 1
            self.jobs[job_id] = Job(job_id, 0, self.seq, "queued")

    @rule(
        kind=st.integers(0, 3),
        ids=st.lists(st.sampled_from(JOB_IDS), min_size=1, max_size=3, unique=True),
    )
    def operator(self, kind: int, ids: list[str]) -> None:
        """Someone aborts a job (twice as often), or retries or purges dead letters (and ids that
        are not)."""
        if kind < 2:
            self.abort(ids[0])
        else:
            self.dead_letters(ids, purge=kind == 3)

    def dead_letters(self, ids: list[str], *, purge: bool) -> None:
        keys = self.keys
        name = "dead_purge" if purge else "dead_retry"
        script_keys = (
            [keys.dead, keys.job_prefix, keys.done_prefix]
            if purge
            else [keys.dead, keys.queued, keys.wake, keys.job_prefix, keys.done_prefix]
        )
        done, skipped = _decode(
            self.call(name, lambda: run_async(self.connection, name, script_keys, ids))
        )
        dead = [
            job_id for job_id in ids if job_id in self.jobs and self.jobs[job_id].status == "failed"
        ]
        assert done == dead
        assert skipped == [job_id for job_id in ids if job_id not in dead]
        for job_id in dead:
            if purge:
                del self.jobs[job_id]
            else:
                job = self.jobs[job_id]
                job.tries = job.lost = 0
                job.token = None
                job.abort = False
                self.make_ready(job)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        if not self.slots:
            return
        keys = self.keys
        pipe = self.admin.pipeline(transaction=False)
        for name in (keys.queued, keys.scheduled, keys.running, keys.dead):
            pipe.zrange(name, 0, -1, withscores=True)
        for job_id in self.jobs:
            pipe.hmget(keys.job(job_id), "status", "tries", "lost", "token", "abort")
        owners = sorted({job.owner for job in self.jobs.values() if job.owner} | self.heartbeats)
        for owner in owners:
            pipe.smembers(keys.owned(owner))
        pipe.zrange(keys.workers, 0, -1)
        replies = pipe.execute()
        queued, scheduled, running, dead = (
            {member.decode(): score for member, score in reply} for reply in replies[:4]
        )
        hashes = replies[4 : 4 + len(self.jobs)]
        owned = dict(zip(owners, replies[4 + len(self.jobs) : -1], strict=True))
        workers = set(_decode(replies[-1]))
        where = f" after {self.steps[-8:]}"

        sets = {"queued": queued, "scheduled": scheduled, "running": running, "failed": dead}
        for status, members in sets.items():
            expected = {job.id for job in self.jobs.values() if job.status == status}
            assert set(members) == expected, f"{status}: {set(members)} != {expected}{where}"
        for job, fields in zip(self.jobs.values(), hashes, strict=True):
            status, tries, lost, token, abort = _decode(fields)
            assert status == job.status, f"{job.id}: status {status} != {job.status}{where}"
            assert (int(tries), int(lost)) == (job.tries, job.lost), f"{job.id}: counts{where}"
            assert token == job.token, f"{job.id}: token {token} != {job.token}{where}"
            assert (abort is not None) == job.abort, f"{job.id}: abort flag{where}"
            if job.status == "scheduled" and job.due is not None:
                assert scheduled[job.id] == job.due, f"{job.id}: due{where}"
            if job.status == "running":
                # the token names its owner, and only that owner's set holds the job
                assert job.owner is not None and token.startswith(f"{job.owner}:"), where
                holders = [owner for owner, members in owned.items() if job.id.encode() in members]
                assert holders == [job.owner], f"{job.id}: owned by {holders}{where}"
        for owner, members in owned.items():
            expected = {job.id for job in self.jobs.values() if job.owner == owner}
            assert set(_decode(list(members))) == expected, f"owned:{owner}{where}"
        assert workers == self.heartbeats, f"workers {workers} != {self.heartbeats}{where}"
        # queued order: priority, then enqueue order
        order = sorted(queued, key=lambda job_id: queued[job_id])
        expected_order = sorted(
            (job.id for job in self.jobs.values() if job.status == "queued"),
            key=lambda job_id: (-self.jobs[job_id].priority, self.jobs[job_id].seq),
        )
        assert order == expected_order, f"queue order {order} != {expected_order}{where}"


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"  {key}: {before.get(key)!r} -> {after.get(key)!r}")
    return "\n".join(lines) or json.dumps("no difference")
