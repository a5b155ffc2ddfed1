"""The worker's side of workflows (docs/workflows.md): the `Resolver` tells the dependants of jobs
that ended, and `parent_results` reads a job's parents for `jobd.current_job().parent_results()`.

A job of a workflow that ends is added to its queue's `settled` ZSET by the script that ends it.
The resolver of any worker consuming that queue then, for each such job:
1. tells each dependant (resolve.lua on the dependant's own queue, 500 per pipeline, so a parent
   with 10,000 dependants is never one long script);
2. detaches it from its parents (detach.lua), which may then expire;
3. removes it from the ZSET (settled.lua), and gives it its TTL if no dependant needs it.
Entries are settled CONCURRENT at a time: each takes a few round trips, and they are independent.
Every step is idempotent, so two workers doing the same entry, or a worker that dies half way
(its entry stays in the list), change nothing the second time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import redis.asyncio

from jobd.crypto import RESULT, JobSeal, Keys
from jobd.errors import DecryptError, JobAborted, JobFailed, JobNotFound
from jobd.model import JobStatus, decode_error
from jobd.redis.graph import (
    FLOW_KEY_MS,
    GATE_MS,
    detach_discarded,
    edge,
    flow_key,
    gate_calls,
    parents_of,
    parse_edge,
)
from jobd.redis.keys import QueueKeys, member_text
from jobd.redis.scripts import run_async, run_async_many
from jobd.serializer import Serializer
from jobd.worker.context import WorkerContext
from jobd.worker.runner import ClaimedJob

logger = logging.getLogger("jobd.flows")

BATCH = 500
"""Dependants told (or parents detached) per pipeline, and settled jobs taken per look."""
CONCURRENT = 50
"""Settled jobs worked on at once."""
SWEEP_SECONDS = 1.0
"""How often the resolver looks at the settled lists without being woken (jobs that ended on
another worker that died before it told their dependants, waiting jobs aborted by a client)."""
ENDED = (b"succeeded", b"failed", b"aborted")


class Resolver:
    """Works through the settled lists of the worker's queues (see the module docstring)."""

    def __init__(
        self, context: WorkerContext, *, serializer: Serializer, keys: Keys | None = None
    ) -> None:
        """`serializer` reads the parents' results (the worker's result serializer), `keys`
        decrypt those that are encrypted (jobd.crypto)."""
        self.context = context
        self.serializer = serializer
        self.keys = keys
        self.redis = context.redis
        self.prefix = context.settings.redis.key_prefix
        self.queues = context.settings.worker.queues
        self.wake = asyncio.Event()
        """Set when a job of a workflow ended here: its dependants are told at once."""
        self.held_ms = GATE_MS
        """How long a held flow (Redis Cluster) may wait for its producer's commit."""

    async def run(self) -> None:
        finished = self.context.finished
        while not finished.is_set():
            self.wake.clear()
            done = await self.context.call("settle workflows", self.settle_all, keep_trying=True)
            if done:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), SWEEP_SECONDS)

    async def settle_all(self) -> int:
        """Settle up to BATCH ended jobs of each queue, and look at its held flows; how many
        settled jobs there were."""
        count = 0
        for queue in self.queues:
            keys = QueueKeys(self.prefix, queue)
            entries = cast(
                list[tuple[bytes, float]],
                await self.redis.zrange(keys.settled, 0, BATCH - 1, withscores=True),
            )
            for first in range(0, len(entries), CONCURRENT):
                await asyncio.gather(
                    *(
                        self.settle(queue, member_text(member), score)
                        for member, score in entries[first : first + CONCURRENT]
                    )
                )
            count += len(entries)
            await self.sweep_held(queue)
        return count

    async def sweep_held(self, queue: str) -> None:
        """Flows over several queues (Redis Cluster) still held GATE_MS after they were stored:
        released when their producer committed them and died before it lifted the gate,
        discarded otherwise (marked abandoned first, so a late commit fails: every job or
        none)."""
        keys = QueueKeys(self.prefix, queue)
        old = time.time() * 1000 - self.held_ms
        for member in await self.redis.zrangebyscore(keys.gated, "-inf", old, start=0, num=BATCH):
            job_id = member_text(member)
            gate = await self.redis.hget(keys.job(job_id), "gate")
            if gate is None:
                await self.redis.zrem(keys.gated, job_id)
                continue
            gate_text = member_text(gate)
            fate_key = flow_key(self.prefix, gate_text)
            await self.redis.set(fate_key, "abandoned", nx=True, px=FLOW_KEY_MS)
            held = [(queue, job_id)]
            if await self.redis.get(fate_key) == b"committed":
                await run_async_many(
                    self.redis, "ungate", gate_calls(self.prefix, gate_text, held, "release")
                )
            else:
                calls = gate_calls(self.prefix, gate_text, held, "discard")
                replies = await run_async_many(self.redis, "ungate", calls)
                if detach := detach_discarded(self.prefix, held, replies):
                    await run_async_many(self.redis, "detach", detach)
                logger.warning("job %s: its flow was never committed; discarded", job_id)

    async def settle(self, queue: str, job_id: str, score: float) -> None:
        """Settle the end of `job_id` that its entry in 'settled' (with `score`) records."""
        keys = QueueKeys(self.prefix, queue)
        status, parents = await self.redis.hmget(keys.job(job_id), ["status", "parents"])
        if status in ENDED:
            await self._tell_dependants(keys, job_id, status.decode())
            calls = [
                (
                    [QueueKeys(self.prefix, q).job(p), QueueKeys(self.prefix, q).dependants(p)],
                    [p, edge(queue, job_id)],
                )
                for q, p in parents_of(parents)
            ]
            for first in range(0, len(calls), BATCH):
                replies = await run_async_many(self.redis, "detach", calls[first : first + BATCH])
                self._check(replies, "detach")
        # not ended (a dead letter retried meanwhile): it comes back when it ends again
        await run_async(
            self.redis, "settled", [keys.job(job_id), keys.dependants(job_id), keys.settled],
            [job_id, f"{score:.0f}"],
        )  # fmt: skip

    async def _tell_dependants(self, keys: QueueKeys, job_id: str, status: str) -> None:
        parent = edge(keys.queue, job_id)
        cursor = 0
        while True:
            cursor, members = await self.redis.sscan(keys.dependants(job_id), cursor, count=BATCH)
            calls = []
            for member in members:
                queue, child = parse_edge(member)
                child_keys = QueueKeys(self.prefix, queue)
                calls.append(
                    ([child_keys.job(child), child_keys.waits(child)], [child, parent, status])
                )
            if calls:
                self._check(await run_async_many(self.redis, "resolve", calls), "resolve")
            if cursor == 0:
                return

    async def parent_results(self, job: ClaimedJob) -> dict[str, Any]:
        """jobd.current_job().parent_results() of `job`."""
        return await parent_results(
            self.redis, self.prefix, job.queue, job.id, self.serializer, self.keys
        )

    @staticmethod
    def _check(replies: list[Any], what: str) -> None:
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors:
            raise errors[0]


async def parent_results(
    client: redis.asyncio.Redis,
    prefix: str,
    queue: str,
    job_id: str,
    serializer: Serializer,
    keys: Keys | None = None,
) -> dict[str, Any]:
    """Parent id -> its result; a parent that failed maps to a JobFailed, one aborted to a
    JobAborted, one whose record is gone to a JobNotFound, one whose encrypted result `keys`
    cannot decrypt to a DecryptError (each an exception object, not raised)."""
    parents = parents_of(await client.hget(QueueKeys(prefix, queue).job(job_id), "parents"))
    if not parents:
        return {}
    async with client.pipeline(transaction=False) as pipe:
        for parent_queue, parent_id in parents:
            pipe.hmget(
                QueueKeys(prefix, parent_queue).job(parent_id),
                ["status", "result", "error", "function"],
            )
        rows = await pipe.execute()
    results: dict[str, Any] = {}
    for (parent_queue, parent_id), row in zip(parents, rows, strict=True):
        status, result, error, function = row
        seal = JobSeal(keys, parent_id, parent_queue, (function or b"").decode(errors="replace"))
        if status == JobStatus.SUCCEEDED.encode():
            what = f"result of job {parent_id}"
            try:
                opened = seal.open(result, RESULT) if result else None
            except DecryptError as problem:
                results[parent_id] = problem
                continue
            results[parent_id] = serializer.loads(opened, what=what) if opened else None
        elif status == JobStatus.FAILED.encode():
            info = decode_error(error, seal)
            results[parent_id] = JobFailed(
                parent_id, info.type if info else "Error", info.message if info else "",
                info.traceback if info else "",
            )  # fmt: skip
        elif status == JobStatus.ABORTED.encode():
            results[parent_id] = JobAborted(parent_id)
        else:
            results[parent_id] = JobNotFound(
                f"job {parent_id} of queue {parent_queue!r}: no result "
                f"({'not ended' if status else 'its record is gone'})"
            )
    return results
