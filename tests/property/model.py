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
the first: only the heartbeat times and the queue's activity clock may move, and a replayed
promote may move the jobs that fell due between the two calls (a reaper's staggered requeues).

Time: leases are long (60 s) so that nothing expires by itself during a run; a crash or partition
expires a heartbeat by hand, and the queue's activity record is set as if workers had been touching
it for long, so `reap` acts at once. Delays are "now" or an hour; the reaper's staggered requeues
are a few hundred ms, and the model reads their due times from the scripts' replies and hashes.

Workflows (docs/workflows.md): a producer enqueues a job `after=` one to three jobs of the model
(running, waiting or ended ones, now and then one that does not exist; or after none, through
flow.lua), with either failure policy. Every job of a workflow that ends is added to the queue's
`settled` ZSET, and the resolver's step for an entry (`Resolver.settle`) runs for any entry, in any
order, and again for an entry that is gone (two workers, a replay): whole, or call by call
(resolve, detach, settled) from what it read when it began, with other steps in between, or
abandoned half way (a worker that died). `drain` runs it until the ZSET is empty. The model follows
each job's parents, the parents it still waits for (`waits:<id>`), the children that still need
its result (`dependants:<id>`), which parents' ends reached it, the settled ZSET, and which ended
jobs have a TTL. Besides the comparison with the model (and the reply of each call), the promises
are checked on Redis itself after every step: a waiting job is in no other index and waits for
someone; each parent it waits for exists and either has not ended or is still in the settled ZSET
(its end will reach the child); once the ZSET is empty, no ended job is still a dependant and each
ended job that no dependant needs has its TTL. And in the model: a job is released once, only after
every parent's end reached it, and only if its policy is "run" or they all succeeded; a job with
parents is queued, scheduled or running only after that release, or a dead-letter retry.

Each end of a job of a workflow scores its entry with a new number of the queue's `seq`: the
model learns the scores from Redis after each step (a reap ends several jobs in the order of a
set), and a resolver passes the score it read to settled.lua, which leaves a later end's entry. A
purged dead letter of a workflow stays as a record marked `purged` until its end was settled and
no dependant needs it. The three ways of losing an end that this machine found first are in
tests/property/test_workflow_regressions.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
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
from jobd.errors import InvalidJobOption
from jobd.model import ErrorInfo, encode_error
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import run_async
from jobd.serializer import JsonSerializer
from jobd.worker.flows import Resolver
from jobd.worker.runner import ClaimedJob
from jobd.worker.store import ABORTED_KEEP_MS, Finish, Store

QUEUE = "default"
LEASE_MS = 60_000
MAX_LOST = 2
KEEP_MS = 3_600_000
FAR_MS = 3_600_000
JOB_IDS = ("a", "b", "c", "d", "e")
FLOW_IDS = (*JOB_IDS, "f", "g", "h")
"""Ids of jobs enqueued with parents: a few more, as a waiting job frees its id only late."""
CRON_TICKS = (60_000, 120_000, 180_000)
ENDED = ("succeeded", "failed", "aborted")
MAX_SETTLING = 2
"""Resolvers that may be in the middle of an entry at once (two workers)."""


@dataclass(eq=False)
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
    error: str | None = None
    """The error type its hash holds while it is failed."""
    kept: bool = False
    """Its hash has a TTL (an ended job that nothing needs any more)."""
    links: bool = False
    """It has parents or dependants (the hash's 'links' field): its end goes to 'settled'."""
    keep_noted: bool = False
    """The hash's 'keep_ms' field: the TTL it gets once no dependant needs it."""
    parents: tuple[str, ...] = ()
    policy: str = "fail"
    waits: set[str] = field(default_factory=set)
    """The parents whose end has not reached it yet (waits:<id>)."""
    dependants: set[str] = field(default_factory=set)
    """The children that keep it (dependants:<id>): linked, and not yet detached by their end."""
    told: dict[str, tuple[Job | None, str]] = field(default_factory=dict, repr=False)
    """Parent id -> the parent (that very record) whose end reached this job, or that had ended
    when it was linked, and how it ended."""
    delay_due: int | None = None
    """Its due_at, for a job of a workflow enqueued with a delay."""
    released: int = 0
    """Times it left 'waiting' for the queue (its parents' doing): at most once."""
    revived: bool = False
    """An operator retried it from the dead letters: it runs whatever its parents do (as a
    parent: it ended, and may end again)."""
    purged: bool = False
    """Purged from the dead letters while linked: a record without payload or error, kept until
    its end was settled and no dependant needs it."""


@dataclass
class Settling:
    """A resolver in the middle of one entry: the calls it has yet to make, decided by what it
    read when it began (the job's status, parents and dependants)."""

    job_id: str
    score: int
    """The score of the entry it took (which end of the job it settles)."""
    calls: list[tuple[str, ...]]


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
        self.settled: dict[str, int | None] = {}
        """The queue's settled ZSET: id -> score (None until learnt from Redis after the step)."""
        self.seen: list[tuple[str, int]] = []
        """Every entry (id, score) seen in the settled ZSET, for a resolver that takes one late."""
        self.settling: list[Settling] = []
        self.known_ids: set[str] = set(FLOW_IDS)
        context = SimpleNamespace(
            redis=self.connection,
            settings=SimpleNamespace(
                redis=SimpleNamespace(key_prefix=self.prefix),
                worker=SimpleNamespace(queues=(QUEUE,)),
            ),
        )
        self.resolver = Resolver(context, serializer=JsonSerializer())  # type: ignore[arg-type]

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
            assert after == before or (name == "promote" and self.fell_due(before, after)), (
                f"replaying {name} changed Redis:\n{_diff(before, after)}"
            )
            self.replayed(name, reply, again)
        return reply

    def fell_due(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """A replayed promote moved to the queue only jobs that fell due between the two calls
        (the reaper staggers its requeues by 100 ms): what the clock alone explains."""
        keys = self.keys
        now = self.server_ms()
        scheduled = before.get(keys.scheduled, [])
        due = {member for member, score in scheduled if score <= now}
        if not due:
            return False
        expected = dict(before)
        expected[keys.scheduled] = [entry for entry in scheduled if entry[0] not in due]
        if not expected[keys.scheduled]:
            del expected[keys.scheduled]
        moved = [entry for entry in after.get(keys.queued, []) if entry[0] in due]
        queued = before.get(keys.queued, []) + moved
        if queued:
            expected[keys.queued] = sorted(queued, key=lambda entry: (entry[1], entry[0]))
        for member in due:
            job_key = keys.job(member.decode())
            if job_key in before:
                expected[job_key] = {**before[job_key], b"status": b"queued"}
        expected[keys.wake] = [b"1"]
        return expected == after

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
        elif name == "enqueue_after":
            if isinstance(first, InvalidJobOption):
                assert isinstance(again, InvalidJobOption)
            else:
                assert [ref.created for ref in again] == [False] * len(again)
        elif name == "resolve":  # the edge is gone: the parent's end reaches the child once
            assert _decode(again) == ("missing" if _decode(first) == "missing" else "done")
        elif name in ("detach", "settled"):
            assert again == first

    @staticmethod
    def dead(job: Job) -> bool:
        """In the dead letters (a purged record of a workflow is failed, but no dead letter)."""
        return job.status == "failed" and not job.purged

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

    def end(self, job: Job, status: str, error: str | None = None) -> None:
        """The job ends: a job of a workflow goes to the settled ZSET (its TTL waits, keep_ms
        noted); any other gets its TTL, but a dead letter, which keeps none."""
        job.status = status
        job.due = None
        if status == "failed":
            job.error = error
        if job.links:
            self.links_ended(job)
        else:
            job.kept = status != "failed"

    def links_ended(self, job: Job) -> None:
        """A job of a workflow ended: a new entry in 'settled' (a new score, learnt after the
        step), keep_ms noted, no TTL."""
        self.seq += 1  # the entry's score is a number of the queue's seq counter
        self.settled[job.id] = None
        job.keep_noted = True
        job.kept = False

    def keep_unneeded(self, job: Job) -> None:
        """No dependant needs the job any more: an ended one gets the TTL it was spared, and a
        purged one goes; not while its own end waits in 'settled'."""
        if not job.keep_noted or job.id in self.settled:
            return
        if job.purged:
            del self.jobs[job.id]
        elif job.status in ("succeeded", "aborted"):
            job.kept = True

    def score(self, job_id: str) -> int | None:
        """The score of the job's entry in 'settled' (read from Redis if not learnt yet)."""
        if job_id in self.settled and self.settled[job_id] is None:
            score = self.admin.zscore(self.keys.settled, job_id)
            assert score is not None, f"{job_id}: no entry in 'settled'"
            self.settled[job_id] = int(score)
        return self.settled.get(job_id)

    def learn_scores(self, entries: list[tuple[bytes, float]]) -> None:
        """The settled ZSET as Redis holds it: the same ids, known scores unchanged."""
        scores = {member.decode(): int(score) for member, score in entries}
        assert set(scores) == set(self.settled), f"settled {scores} != {self.settled}"
        for job_id, score in scores.items():
            known = self.settled[job_id]
            assert known in (None, score), f"{job_id}: entry {score}, was {known}"
            self.settled[job_id] = score
            if (job_id, score) not in self.seen:
                self.seen.append((job_id, score))

    def release_child(self, job: Job) -> None:
        """The last parent's end reached a waiting job (or every parent had ended when it was
        enqueued): it goes to the queue, or to 'scheduled' for a delay that has not passed."""
        where = f" after {self.steps[-8:]}"
        job.released += 1
        assert job.released == 1, f"{job.id} released twice{where}"
        assert job.tries == 0 and not job.waits, f"{job.id}: released with {job.waits}{where}"
        for parent_id in job.parents:
            assert parent_id in job.told, f"{job.id} released before {parent_id} ended{where}"
            parent, status = job.told[parent_id]
            assert status == "succeeded" or job.policy == "run", f"{job.id}: {status}{where}"
            if parent is not None and parent is self.jobs.get(parent_id):
                # the parent it was told of is still there: it has ended (an operator may have
                # retried it from the dead letters since)
                assert parent.status in ENDED or parent.revived, f"{job.id}: {parent_id}{where}"
        if job.delay_due is not None:
            job.status = "scheduled"
            job.due = job.delay_due
        else:
            self.make_ready(job)

    def fail_dependant(self, job: Job) -> None:
        """A parent failed or was aborted and the job's policy is "fail": dead-lettered."""
        assert job.policy == "fail"
        job.waits.clear()
        self.end(job, "failed", "DependencyFailed")

    @staticmethod
    def edge(job_id: str) -> str:
        return f"{QUEUE} {job_id}"

    def model_resolve(self, child_id: str, parent_id: str, status: str) -> str:
        """resolve.lua: the end (`status`) of `parent_id` reaches `child_id`; its reply."""
        child = self.jobs.get(child_id)
        if child is None:
            return "missing"
        if parent_id not in child.waits:
            return "done"
        child.waits.discard(parent_id)
        child.told[parent_id] = (self.jobs.get(parent_id), status)
        if child.status != "waiting":
            return "done"
        if status != "succeeded" and child.policy != "run":
            self.fail_dependant(child)
            return "failed"
        if child.waits:
            return "waiting"
        self.release_child(child)
        return "queued"

    def model_detach(self, parent_id: str, child_id: str) -> int:
        """detach.lua: `child_id` ended, `parent_id` need not keep its result for it."""
        parent = self.jobs.get(parent_id)
        if parent is None:
            return 0
        parent.dependants.discard(child_id)
        if not parent.dependants:
            self.keep_unneeded(parent)
        return len(parent.dependants)

    def model_settled(self, job_id: str, score: int) -> int:
        """settled.lua: the entry the resolver took leaves the settled ZSET; -1 when the entry
        there now is a later end's, which stays."""
        if job_id in self.settled and self.score(job_id) != score:
            return -1
        self.settled.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is None:
            return 0
        if not job.dependants:
            self.keep_unneeded(job)
        return len(job.dependants)

    def settle_plan(self, job_id: str) -> list[tuple[str, ...]]:
        """The script calls of Resolver.settle for an entry, as the model sees the job now."""
        job = self.jobs.get(job_id)
        calls: list[tuple[str, ...]] = []
        if job is not None and job.status in ENDED:
            calls += [("resolve", child, job.status) for child in sorted(job.dependants)]
            calls += [("detach", parent) for parent in job.parents]
        calls.append(("settled",))
        return calls

    def apply(self, job_id: str, score: int, call: tuple[str, ...]) -> Any:
        """The model's side of one call of the resolver's step for `job_id`; its reply."""
        if call[0] == "resolve":
            return self.model_resolve(call[1], job_id, call[2])
        if call[0] == "detach":
            return self.model_detach(call[1], job_id)
        return self.model_settled(job_id, score)

    def send(self, job_id: str, score: int, call: tuple[str, ...]) -> None:
        """One call of the resolver's step for `job_id`, through the script, and the model's."""
        keys, connection = self.keys, self.connection
        if call[0] == "resolve":
            child, status = call[1], call[2]
            script_keys = [keys.job(child), keys.waits(child)]
            args = [child, self.edge(job_id), status]
        elif call[0] == "detach":
            parent = call[1]
            script_keys = [keys.job(parent), keys.dependants(parent)]
            args = [parent, self.edge(job_id)]
        else:
            script_keys = [keys.job(job_id), keys.dependants(job_id), keys.settled]
            args = [job_id, str(score)]
        name = call[0]
        reply = _decode(self.call(name, lambda: run_async(connection, name, script_keys, args)))
        expected = self.apply(job_id, score, call)
        assert reply == expected, (
            f"{call} of {job_id}: {reply} != {expected} after {self.steps[-8:]}"
        )

    def settle_whole(self, job_id: str, score: int) -> None:
        """Resolver.settle for one entry (the end scored `score`), at once."""
        plan = self.settle_plan(job_id)
        self.call("settle", lambda: self.resolver.settle(QUEUE, job_id, score))
        for call in plan:
            self.apply(job_id, score, call)

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
        self.finish_run(slot, claimed, outcome)

    def finish_run(self, slot: Slot, claimed: ClaimedJob, outcome: int) -> None:
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
        job.abort = False
        self.release(job)
        self.end(job, status, "ValueError")

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
            self.end(job, "aborted")  # the abort flag stays on the (terminal) job
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
        elif job.status in ("queued", "scheduled", "waiting"):
            assert reply == "aborted"
            job.waits.clear()
            self.end(job, "aborted")
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
                self.end(job, "aborted")  # the abort flag stays on the (terminal) job
            elif job.lost >= MAX_LOST:
                self.end(job, "failed", "WorkerLost")
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
        ended = sorted(job.id for job in self.jobs.values() if job.kept)
        if ended:
            self.steps.append("expire")
            assert not self.jobs[ended[0]].dependants
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
            self.known_ids.add(job_id)

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
        dead = [job_id for job_id in ids if job_id in self.jobs and self.dead(self.jobs[job_id])]
        assert done == dead
        assert skipped == [job_id for job_id in ids if job_id not in dead]
        for job_id in dead:
            if purge and self.jobs[job_id].links:
                # of a workflow: a record without payload or error stays until its end (a new
                # entry in 'settled') was settled and no dependant needs it
                job = self.jobs[job_id]
                job.purged = True
                job.error = None
                self.links_ended(job)
            elif purge:
                del self.jobs[job_id]
            else:
                job = self.jobs[job_id]
                job.tries = job.lost = 0
                job.token = None
                job.abort = False
                job.kept = False
                job.revived = True
                self.make_ready(job)

    # -- workflows ------------------------------------------------------------------------------

    @rule(
        job_id=st.sampled_from(FLOW_IDS),
        fresh=st.sampled_from([True, True, False]),
        picks=st.lists(st.integers(0, 100), min_size=1, max_size=3),
        live=st.sampled_from([True, True, False]),
        policy=st.sampled_from(["fail", "run"]),
        far=st.sampled_from([False, False, True]),
        priority=st.sampled_from([-1, 0, 1]),
        ghost=st.sampled_from([False, False, False, True]),
    )
    def enqueue_after(
        self,
        job_id: str,
        fresh: bool,
        picks: list[int],
        live: bool,
        policy: str,
        far: bool,
        priority: int,
        ghost: bool,
    ) -> None:
        """A producer enqueues a job (`job_id`, or with `fresh` the first free id from there on)
        after 1-3 jobs of the model (with `live` ones that have not ended, if any), and now and
        then after one that does not exist; or, with no job to wait for, after none (the root
        of a graph, stored by flow.lua as any job)."""
        free = [other for other in FLOW_IDS if other not in self.jobs]
        if fresh and free:
            job_id = min(free, key=lambda other: (other < job_id, other))
        candidates = sorted(other for other in self.jobs if other != job_id)
        running = [other for other in candidates if self.jobs[other].status not in ENDED]
        if live and running:
            candidates = running
        parents = [candidates[pick % len(candidates)] for pick in picks] if candidates else []
        parents = list(dict.fromkeys(parents))
        missing = sorted(set(JOB_IDS) - set(self.jobs) - {job_id})
        if ghost and missing:
            parents.append(missing[0])
        delay = FAR_MS / 1000 if far else None

        async def enqueue() -> Any:
            try:
                return await self.client.run(
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
                        after=parents,
                        after_failure=policy,
                    )
                )
            except InvalidJobOption as error:
                return error

        reply = self.call("enqueue_after", enqueue)
        if any(parent not in self.jobs for parent in parents):
            assert isinstance(reply, InvalidJobOption), reply  # and nothing was stored
            return
        (ref,) = reply
        assert ref.created == (job_id not in self.jobs)
        if not ref.created:
            return  # deduplicated: neither stored again nor linked
        self.seq += 1
        job = Job(job_id, priority, self.seq, "waiting", parents=tuple(parents), policy=policy)
        job.links = bool(parents)
        self.jobs[job_id] = job
        failed = None
        for parent_id in parents:
            parent = self.jobs[parent_id]
            parent.dependants.add(job_id)
            parent.links = True
            if parent.status in ENDED:
                if parent.kept:  # kept (PERSIST) until the new child has ended
                    parent.kept = False
                    parent.keep_noted = True
                job.told[parent_id] = (parent, parent.status)
                if parent.status != "succeeded" and policy == "fail" and failed is None:
                    failed = parent_id
            else:
                job.waits.add(parent_id)
        if far:
            due = self.admin.hget(self.keys.job(job_id), "due_at")
            assert due is not None
            job.delay_due = int(due)
        if failed is not None:
            self.fail_dependant(job)
        elif not job.waits:
            self.release_child(job)

    @precondition(lambda self: any(job.status == "queued" for job in self.jobs.values()))
    @rule(index=st.integers(0, 1), outcome=st.sampled_from([0, 0, 1, 2]))
    def work(self, index: int, outcome: int) -> None:
        """A worker runs the next job to its end (claim, then finish): parents end sooner."""
        slot = self.slots[index]
        before = set(slot.held)
        self.claim(index, 1)
        for job_id in sorted(set(slot.held) - before):
            self.finish_run(slot, slot.held[job_id], outcome)

    @precondition(lambda self: any(job.links for job in self.jobs.values()))
    @rule(pick=st.integers(0, 100), kind=st.integers(0, 3))
    def flow_operator(self, pick: int, kind: int) -> None:
        """Someone aborts a job of a workflow: one that waits for its parents, or one that has
        dependants and has not ended; or retries or purges a dead letter of a workflow (one
        whose parent failed, say)."""
        jobs = sorted((job for job in self.jobs.values() if job.links), key=lambda job: job.id)
        if kind == 0:
            ids = [job.id for job in jobs if job.status == "waiting"]
        elif kind == 1:
            ids = [job.id for job in jobs if job.dependants and job.status not in ENDED]
        else:
            ids = [job.id for job in jobs if job.status == "failed"]
        if not ids:
            return
        if kind < 2:
            self.abort(ids[pick % len(ids)])
        else:
            self.dead_letters([ids[pick % len(ids)]], purge=kind == 3)

    @precondition(lambda self: self.seen)
    @rule(pick=st.integers(0, 100), how=st.integers(0, 3))
    def resolve(self, pick: int, how: int) -> None:
        """A resolver takes an entry of the settled ZSET, in any order: the whole step at once
        (Resolver.settle), or it begins the step (it reads the job) and makes the calls later,
        with other steps in between (`resolver_step`). Or it takes an entry it read long ago,
        which another resolver may have settled, or which a later end may have replaced."""
        entries = sorted(self.settled.items())
        if how == 3 or not entries:
            job_id, score = self.seen[pick % len(self.seen)]
        else:
            job_id, known = entries[pick % len(entries)]
            assert known is not None  # learnt after the last step
            score = known
        if how != 2 or len(self.settling) >= MAX_SETTLING:
            self.steps.append(f"settle {job_id}")
            self.settle_whole(job_id, score)
            return
        # What Resolver.settle reads when it begins: the job's status and parents, its dependants.
        keys = self.keys
        pipe = self.admin.pipeline(transaction=False)
        pipe.hmget(keys.job(job_id), "status", "parents")
        pipe.smembers(keys.dependants(job_id))
        (status, parents), dependants = pipe.execute()
        plan = self.settle_plan(job_id)
        read: list[tuple[str, ...]] = []
        if status is not None and status.decode() in ENDED:
            read += [
                ("resolve", child.decode().split(" ", 1)[1], status.decode())
                for child in sorted(dependants)
            ]
            read += [("detach", parent) for _, parent in json.loads(parents or b"[]")]
        read.append(("settled",))
        assert read == plan, f"{job_id}: {read} != {plan}"
        self.steps.append(f"begin {job_id}")
        self.settling.append(Settling(job_id, score, plan))

    @precondition(lambda self: self.settling)
    @rule(index=st.integers(0, MAX_SETTLING - 1), count=st.integers(0, 3))
    def resolver_step(self, index: int, count: int) -> None:
        """A resolver in the middle of an entry makes its next calls, from what it read when it
        began; with count 0 it dies there (the entry stays for another)."""
        settling = self.settling[index % len(self.settling)]
        if count == 0:
            self.steps.append(f"resolver died in {settling.job_id}")
            self.settling.remove(settling)
            return
        for call in settling.calls[:count]:
            self.send(settling.job_id, settling.score, call)
        del settling.calls[:count]
        if not settling.calls:
            self.settling.remove(settling)

    @precondition(lambda self: self.settled)
    @rule()
    def drain(self) -> None:
        """The resolver works until the settled ZSET is empty (Resolver.settle_all, again while
        it finds entries: the dependants it failed are added in turn)."""
        for _ in range(len(self.known_ids) + 2):
            entries = self.admin.zrange(self.keys.settled, 0, -1, withscores=True)
            self.learn_scores(entries)
            if not entries:
                return
            self.steps.append("drain")
            for member, score in entries:
                self.settle_whole(member.decode(), int(score))
        raise AssertionError(f"the settled ZSET does not empty: {self.settled}")

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def redis_matches_the_model(self) -> None:
        if not self.slots:
            return
        keys = self.keys
        jobs = list(self.jobs.values())
        absent = sorted(self.known_ids - set(self.jobs))
        pipe = self.admin.pipeline(transaction=False)
        for name in (keys.queued, keys.scheduled, keys.running, keys.dead, keys.waiting):
            pipe.zrange(name, 0, -1, withscores=True)
        for job in jobs:
            pipe.hmget(
                keys.job(job.id), "status", "tries", "lost", "token", "abort", "links", "error",
                "parents", "purged",
            )  # fmt: skip
            pipe.pttl(keys.job(job.id))
            pipe.smembers(keys.waits(job.id))
            pipe.smembers(keys.dependants(job.id))
        for job_id in absent:
            pipe.exists(keys.job(job_id), keys.waits(job_id), keys.dependants(job_id))
        owners = sorted({job.owner for job in jobs if job.owner} | self.heartbeats)
        for owner in owners:
            pipe.smembers(keys.owned(owner))
        pipe.zrange(keys.workers, 0, -1)
        pipe.zrange(keys.settled, 0, -1, withscores=True)
        replies = pipe.execute()
        queued, scheduled, running, dead, waiting = (
            {member.decode(): score for member, score in reply} for reply in replies[:5]
        )
        at = 5 + 4 * len(jobs)
        rows = [replies[index : index + 4] for index in range(5, at, 4)]
        strays = replies[at : at + len(absent)]
        owned = dict(zip(owners, replies[at + len(absent) : -2], strict=True))
        workers = set(_decode(replies[-2]))
        self.learn_scores(replies[-1])
        settled = sorted(self.settled)
        where = f" after {self.steps[-8:]}"

        sets = {
            "queued": queued,
            "scheduled": scheduled,
            "running": running,
            "failed": dead,
            "waiting": waiting,
        }
        for status, members in sets.items():
            expected = {
                job.id
                for job in jobs
                if job.status == status and not (job.purged and status == "failed")
            }
            assert set(members) == expected, f"{status}: {set(members)} != {expected}{where}"
        redis_jobs: dict[str, dict[str, Any]] = {}
        for job, (fields, pttl, waits, dependants) in zip(jobs, rows, strict=True):
            status, tries, lost, token, abort, links, error, parents, purged = _decode(fields)
            assert (purged is not None) == job.purged, f"{job.id}: purged{where}"
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
            if job.status == "failed":
                kind = json.loads(error)["type"] if error else None
                assert kind == job.error, f"{job.id}: error {kind} != {job.error}{where}"
            assert (links is not None) == job.links, f"{job.id}: links{where}"
            assert (pttl > 0) == job.kept, f"{job.id}: ttl {pttl}, kept {job.kept}{where}"
            parent_ids = [parent for _, parent in json.loads(parents)] if parents else []
            assert tuple(parent_ids) == job.parents, f"{job.id}: parents {parent_ids}{where}"
            waits = {member.decode().split(" ", 1)[1] for member in waits}
            assert waits == job.waits, f"waits:{job.id} {waits} != {job.waits}{where}"
            dependants = {member.decode().split(" ", 1)[1] for member in dependants}
            assert dependants == job.dependants, f"dependants:{job.id} {dependants}{where}"
            redis_jobs[job.id] = {
                "status": status,
                "purged": purged is not None,
                "ttl": pttl > 0,
                "waits": waits,
                "dependants": dependants,
            }
        for job_id, stray in zip(absent, strays, strict=True):
            assert stray == 0, f"{job_id} is gone, but some of its keys are not{where}"
        for owner, members in owned.items():
            expected = {job.id for job in jobs if job.owner == owner}
            assert set(_decode(list(members))) == expected, f"owned:{owner}{where}"
        assert workers == self.heartbeats, f"workers {workers} != {self.heartbeats}{where}"
        for job in jobs:
            if job.parents and job.status in ("queued", "scheduled", "running"):
                # its parents released it, or an operator retried it from the dead letters
                assert job.released == 1 or job.revived, f"{job.id} runs unreleased{where}"
        # queued order: priority, then enqueue order
        order = sorted(queued, key=lambda job_id: queued[job_id])
        expected_order = sorted(
            (job.id for job in jobs if job.status == "queued"),
            key=lambda job_id: (-self.jobs[job_id].priority, self.jobs[job_id].seq),
        )
        assert order == expected_order, f"queue order {order} != {expected_order}{where}"
        self.check_workflow_promises(redis_jobs, sets, settled, where)

    @staticmethod
    def check_workflow_promises(
        jobs: dict[str, dict[str, Any]],
        sets: dict[str, dict[str, float]],
        settled: list[str],
        where: str,
    ) -> None:
        """The promises of docs/workflows.md, on what Redis holds (not on the model)."""
        for job_id, job in jobs.items():
            if job["status"] == "waiting":
                # a waiting job is in no other index, and waits for someone ...
                others = [name for name, members in sets.items() if job_id in members]
                assert others == ["waiting"], f"waiting {job_id} is in {others}{where}"
                assert job["waits"], f"waiting {job_id} waits for no parent{where}"
                # ... whose end will reach it: the parent has not ended, or it is still in the
                # settled ZSET (no end is lost)
                for parent_id in job["waits"]:
                    parent = jobs.get(parent_id)
                    assert parent is not None, f"{job_id} waits for {parent_id}, gone{where}"
                    assert parent["status"] not in ENDED or parent_id in settled, (
                        f"{job_id} waits for {parent_id}, which ended and left 'settled'{where}"
                    )
            elif job["waits"]:
                raise AssertionError(
                    f"{job_id} is {job['status']}, waits for {job['waits']}{where}"
                )
        if settled:
            return
        # Every entry was worked through: no ended job is still a dependant, every ended job that
        # no dependant needs has its TTL (a dead letter keeps none), and a purged one is gone.
        for job_id, job in jobs.items():
            for child_id in job["dependants"]:
                child = jobs.get(child_id)
                assert child is not None and child["status"] not in ENDED, (
                    f"{job_id} still keeps its result for {child_id}, which ended or is gone{where}"
                )
            if job["status"] in ("succeeded", "aborted") and not job["dependants"]:
                assert job["ttl"], f"{job_id} ended, nothing needs it, and it has no TTL{where}"
            if job["purged"]:
                assert job["dependants"], f"{job_id} was purged, nothing needs it, it stays{where}"


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            lines.append(f"  {key}: {before.get(key)!r} -> {after.get(key)!r}")
    return "\n".join(lines) or json.dumps("no difference")
