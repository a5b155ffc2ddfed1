"""The worker's Redis operations: one method per Lua script, with replies parsed into plain values.
No retries here: the worker decides what an unreachable Redis means."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio
import redis.exceptions

from jobd.errors import InvalidJobOption
from jobd.model import ErrorInfo, check_job_id, encode_error
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import Argument, run_async, run_async_after
from jobd.worker.runner import ClaimedJob

PROMOTE_LIMIT = 1000
"""Due scheduled jobs moved per claim call; more move on the next call."""
REAP_WORKER_LIMIT = 100
"""Dead workers handled per reap call."""
ABORTED_KEEP_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim call returned."""

    jobs: list[ClaimedJob]
    now_ms: int
    next_due_ms: int | None
    expired: list[tuple[str, str]] = field(default_factory=list)
    """(id, function) of jobs dropped because they expired before starting."""
    dead: list[tuple[str, str, str]] = field(default_factory=list)
    """(id, function, reason) of jobs the script dead-lettered: 'payload_too_large',
    'invalid_job' (an id or count no producer writes; the id is shown with escapes) or
    'cost_above_limit' (a cost no window of its limit can hold)."""
    held: list[tuple[str, str, str]] = field(default_factory=list)
    """(id, function, limit) of jobs a limit held back: they wait, uncharged, for the limit."""
    waited: list[tuple[str, int]] = field(default_factory=list)
    """(limit, ms) of jobs that start after a limit held them: the limit that held them last."""


@dataclass(slots=True)
class Finish:
    """The final outcome of one job, for the batched finish script (not frozen: see ClaimedJob)."""

    job: ClaimedJob
    status: str  # succeeded | failed | aborted
    value: bytes  # result (succeeded) or error JSON
    keep_ms: int
    dead_letter: bool


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a heartbeat learned: jobs whose lease is lost, jobs to abort, orphans given back."""

    lost: list[tuple[str, str]]
    """(job id, token) of runs whose lease is lost."""
    aborts: list[str]
    released: list[str]


@dataclass(frozen=True, slots=True)
class Reaped:
    requeued: list[str]
    dead: list[tuple[str, str]]
    """(id, function) of jobs dead-lettered because their worker died max_lost times."""
    workers: list[str]


def _texts(values: Iterable[bytes]) -> list[str]:
    return [value.decode() for value in values]


def _pairs(values: list[bytes]) -> list[tuple[str, str]]:
    # (id, function) or (id, token): a forged function name must not break the reply
    texts = [value.decode(errors="backslashreplace") for value in values]
    return list(zip(texts[::2], texts[1::2], strict=True))


def _triples(values: list[bytes]) -> list[tuple[str, str, str]]:
    texts = [value.decode(errors="backslashreplace") for value in values]
    return list(zip(texts[::3], texts[1::3], texts[2::3], strict=True))


def _limit_pairs(limits: Sequence[tuple[str, bool]]) -> list[Argument]:
    """(name, per group) of each limit as the scripts take them: name, 0 or 1, name, ..."""
    return [part for name, per_group in limits for part in (name, int(per_group))]


def _optional_int(value: bytes | None) -> int | None:
    return int(value) if value else None


def _claimed_job(queue: str, token: str, row: list[bytes | None]) -> ClaimedJob:
    """A claimed job from the fields claim.lua read from its hash. Fields that no producer writes
    (forged or corrupted in Redis) never raise here: they set `problem`, and the job is then
    dead-lettered like any job that cannot run. claim.lua has checked the id and `tries`."""
    problems: list[str] = []

    def number(index: int, name: str) -> int | None:
        value = row[index]
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            problems.append(f"field {name!r} is not an integer")
            return None

    job_id = (row[0] or b"").decode()
    try:
        check_job_id(job_id)
    except InvalidJobOption as error:
        problems.append(str(error))
    function = (row[1] or b"").decode(errors="replace")
    enqueued_ms = number(7, "enqueued_at") or 0
    try:
        enqueued_at = datetime.fromtimestamp(enqueued_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        problems.append("field 'enqueued_at' is not a time")
        enqueued_at = datetime.fromtimestamp(0, tz=UTC)
    timeout_ms = number(6, "timeout")
    return ClaimedJob(
        id=job_id,
        queue=queue,
        token=token,
        function=function,
        payload=row[2] or b"",
        tries=int(row[3] or 0),
        lost=number(4, "lost") or 0,
        max_tries=number(5, "max_tries"),
        timeout=timeout_ms / 1000 if timeout_ms else None,
        enqueued_at=enqueued_at,
        priority=number(8, "priority") or 0,
        due_at_ms=number(9, "due_at") or 0,
        signature=row[10] if len(row) > 10 else None,
        links=len(row) > 11 and bool(row[11]),
        headers=(row[12] or b"") if len(row) > 12 else b"",
        problem="; ".join(problems),
    )


class Store:
    """The Redis side of one worker: claims, outcomes, heartbeats and reaping, queue by queue."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str,
        worker_id: str,
        lease_ms: int,
        max_payload_bytes: int,
        limit_specs: Mapping[str, str] | None = None,
    ) -> None:
        """`limit_specs`: per queue, the limits of its functions as claim.lua reads them (see
        jobd.worker.limits); queues without limits are claimed as if limits did not exist."""
        self.redis = client
        self.limit_specs = dict(limit_specs or {})
        self.prefix = prefix
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        # Heartbeats come every lease/3; a longer silence means Redis or the whole fleet was away.
        self.gap_ms = max(lease_ms // 2, 1)
        self.max_payload_bytes = max_payload_bytes
        self._nonces = itertools.count(1)
        self._pending_nonce: dict[str, int] = {}
        self._keys: dict[str, QueueKeys] = {}

    def keys(self, queue: str) -> QueueKeys:
        keys = self._keys.get(queue)
        if keys is None:
            keys = self._keys[queue] = QueueKeys(self.prefix, queue)
        return keys

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Argument]) -> object:
        return await run_async(self.redis, name, keys, args)

    def _claim_call(self, queue: str, nonce: int, count: int) -> tuple[list[str], list[Argument]]:
        keys = self.keys(queue)
        return [
            keys.queued,
            keys.scheduled,
            keys.running,
            keys.workers,
            keys.owned(self.worker_id),
            keys.claim(self.worker_id),
            keys.wake,
            keys.activity,
            keys.dead,
            keys.job_prefix,
            keys.stop(self.worker_id),
            keys.limit_prefix,
            keys.held,
        ], [
            self.worker_id,
            nonce,
            count,
            self.lease_ms,
            self.gap_ms,
            self.max_payload_bytes,
            PROMOTE_LIMIT,
            self.limit_specs.get(queue, ""),
        ]

    def _nonce(self, queue: str) -> int:
        """The nonce of the next claim: after a failed call the same one is sent again, so a claim
        whose reply was lost returns its jobs instead of leaving them owned by nobody who knows."""
        nonce = self._pending_nonce.get(queue) or next(self._nonces)
        self._pending_nonce[queue] = nonce
        return nonce

    def _claimed(self, queue: str, reply: object) -> Claim:
        del self._pending_nonce[queue]
        assert isinstance(reply, list)
        now_ms, next_due, token, expired, dead, held, waited, *rows = reply
        token_text = token.decode()
        jobs = [_claimed_job(queue, token_text, row) for row in rows]
        return Claim(
            jobs,
            int(now_ms),
            _optional_int(next_due),
            _pairs(expired),
            _triples(dead),
            _triples(held),
            [
                (_texts([name])[0], int(ms))
                for name, ms in zip(waited[::2], waited[1::2], strict=True)
            ],
        )

    async def claim(self, queue: str, count: int) -> Claim:
        """Claim up to `count` jobs now."""
        keys, args = self._claim_call(queue, self._nonce(queue), count)
        return self._claimed(queue, await self._script("claim", keys, args))

    async def wait_and_claim(
        self, client: redis.asyncio.Redis, queue: str, count: int, timeout: float
    ) -> Claim:
        """Block on the queue's wake marker (or this worker's stop marker) for up to `timeout`
        seconds, then claim up to `count` jobs: one round trip for an idle worker to pick up a job
        instead of two. `client` is the one for blocking calls. The claim runs however the wait
        ends (it also promotes scheduled jobs that came due); after `stop_waiting` it takes
        nothing. A claim whose reply was lost is replayed at once, not after another wait."""
        if queue in self._pending_nonce:
            return await self.claim(queue, count)
        keys = self.keys(queue)
        claim_keys, args = self._claim_call(queue, self._nonce(queue), count)
        # BLPOP's timeout 0 would mean forever; Redis takes it in seconds with decimals
        wait = ("BLPOP", keys.wake, keys.stop(self.worker_id), f"{max(timeout, 0.001):.3f}")
        try:
            _, reply = await run_async_after(client, wait, "claim", claim_keys, args)
        except (
            redis.exceptions.NoScriptError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        ):
            # The same nonce again through the hot path's client: with the script's source if
            # Redis did not know it, or after a lost reply (the claim may have run). `client` does
            # not retry: redis-py would send the wait again, and the claim's replay would sit
            # behind its BLPOP.
            return await self.claim(queue, count)
        return self._claimed(queue, reply)

    async def stop_waiting(self, queue: str) -> None:
        """End this worker's `wait_and_claim` at once and make its claim take nothing: the popped
        marker ends the wait and the one left gates the claim (or `leave` removes it)."""
        stop = self.keys(queue).stop(self.worker_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(stop, "stop", "stop")
        pipe.pexpire(stop, 2 * self.lease_ms)
        await pipe.execute()

    async def finish(self, queue: str, items: Sequence[Finish]) -> list[str]:
        """Store outcomes of jobs of one queue in one call; per job 'ok', 'stale' or 'replayed'."""
        keys = self.keys(queue)
        batch = [
            [
                item.job.id,
                item.job.token,
                item.status,
                "result" if item.status == "succeeded" else "error",
                item.value.decode(),  # results and errors are UTF-8 JSON text
                item.keep_ms,
                1 if item.dead_letter else 0,
                *((item.job.traceparent,) if item.job.traceparent else ()),
            ]
            for item in items
        ]
        reply = await self._script(
            "finish",
            [
                keys.running,
                keys.dead,
                keys.owned(self.worker_id),
                keys.job_prefix,
                keys.done_prefix,
                keys.queued,
                keys.wake,
            ],
            [json.dumps(batch, ensure_ascii=False, separators=(",", ":"))],
        )
        assert isinstance(reply, list)
        return _texts(reply)

    async def retry(self, job: ClaimedJob, delay_ms: int, error: ErrorInfo) -> tuple[str, int]:
        """Schedule another try; returns the script's verdict and the due time (ms)."""
        keys = self.keys(job.queue)
        reply = await self._script(
            "retry",
            [
                keys.job(job.id),
                keys.running,
                keys.scheduled,
                keys.owned(self.worker_id),
                keys.wake,
                keys.queued,
            ],
            [job.id, job.token, delay_ms, encode_error(error, job.seal)],
        )
        assert isinstance(reply, list)
        return reply[0].decode(), int(reply[1])

    async def throttle(
        self,
        job: ClaimedJob,
        limits: Sequence[tuple[str, bool]],
        pause_ms: int,
        max_throttled_ms: int,
        error: ErrorInfo,
    ) -> tuple[str, int]:
        """Pause `limits` (name, per group) and put the job back to wait for them, uncharged;
        returns the verdict ('ok', 'dead', 'stale' or 'replayed') and until when (ms)."""
        keys = self.keys(job.queue)
        reply = await self._script(
            "throttle",
            [
                keys.job(job.id),
                keys.running,
                keys.owned(self.worker_id),
                keys.queued,
                keys.wake,
                keys.held,
                keys.dead,
                keys.scheduled,
                keys.limit_prefix,
            ],
            [
                job.id,
                job.token,
                pause_ms,
                max_throttled_ms,
                encode_error(error, job.seal),
                *_limit_pairs(limits),
            ],
        )
        assert isinstance(reply, list)
        return reply[0].decode(), int(reply[1])

    async def set_cost(self, job: ClaimedJob, cost: int, limits: Sequence[tuple[str, bool]]) -> str:
        """Correct a running job's cost in its cost `limits` (name, per group); 'ok' or 'stale'."""
        keys = self.keys(job.queue)
        reply = await self._script(
            "set_cost",
            [keys.job(job.id), keys.limit_prefix],
            [job.id, job.token, cost, *_limit_pairs(limits)],
        )
        assert isinstance(reply, list)
        return str(reply[0].decode())

    async def requeue(self, job: ClaimedJob) -> str:
        """Put a running job back in its queue without charging the try (drain)."""
        keys = self.keys(job.queue)
        reply = await self._script(
            "requeue",
            [
                keys.job(job.id),
                keys.running,
                keys.queued,
                keys.owned(self.worker_id),
                keys.wake,
                keys.done(job.id),
            ],
            [job.id, job.token, ABORTED_KEEP_MS],
        )
        assert isinstance(reply, bytes)
        return reply.decode()

    async def renew(
        self, queue: str, jobs: Iterable[ClaimedJob], client: redis.asyncio.Redis | None = None
    ) -> Renewal:
        """Heartbeat: extend this worker's lease; reports lost leases, aborts and released orphans.
        `client`: the heartbeat's own connection (default: the worker's)."""
        keys = self.keys(queue)
        # no orphan is released while a claim is in flight: its reply may still bring them
        claiming = "0" if queue in self._pending_nonce else "1"
        args: list[Argument] = [self.worker_id, self.lease_ms, self.gap_ms, claiming]
        for job in jobs:
            args += [job.id, job.token]
        reply = await run_async(
            client or self.redis,
            "renew",
            [
                keys.workers,
                keys.activity,
                keys.job_prefix,
                keys.owned(self.worker_id),
                keys.queued,
                keys.running,
                keys.wake,
            ],
            args,
        )
        assert isinstance(reply, list)
        return Renewal(_pairs(reply[0]), _texts(reply[1]), _texts(reply[2]))

    async def reap(self, queue: str, max_lost: int) -> Reaped:
        """Requeue the jobs of workers whose heartbeat is gone."""
        keys = self.keys(queue)
        reply = await self._script(
            "reap",
            [
                keys.workers,
                keys.activity,
                keys.queued,
                keys.running,
                keys.dead,
                keys.wake,
                keys.job_prefix,
                keys.owned_prefix,
                keys.scheduled,
            ],
            [self.lease_ms, self.gap_ms, max_lost, REAP_WORKER_LIMIT, ABORTED_KEEP_MS],
        )
        assert isinstance(reply, list)
        return Reaped(_texts(reply[0]), _pairs(reply[1]), _texts(reply[2]))

    async def fire_cron(
        self,
        queue: str,
        name: str,
        *,
        tick_ms: int,
        job_id: str,
        function: str,
        payload: bytes,
        priority: int,
        keep_ms: int,
        signature: bytes = b"",
    ) -> int | None:
        """Fire one tick of cron entry `name` (enqueue its job) unless it was fired already. Returns
        the entry's previous fired tick (epoch ms, 0 for none) when this call fired it, else None."""
        keys = self.keys(queue)
        reply = await self._script(
            "cron",
            [keys.cron(name), keys.queued, keys.scheduled, keys.seq, keys.wake, keys.job(job_id)],
            [
                tick_ms,
                job_id,
                function,
                payload,
                queue,
                priority,
                self.worker_id,
                keep_ms,
                signature,
            ],
        )
        assert isinstance(reply, list)
        fired, previous = reply
        return int(previous) if fired else None

    async def publish_functions(self, queue: str, names: Iterable[str], until_ms: int) -> None:
        """Tell strict producers which functions live workers of `queue` run, until `until_ms`."""
        mapping: dict[str | bytes, int] = {name: until_ms for name in names}
        if mapping:
            await self.redis.hset(QueueKeys(self.prefix, queue).functions, mapping=mapping)  # type: ignore[arg-type]

    async def leave(self, queue: str) -> None:
        """Remove this worker's heartbeat on a clean exit. If jobs are still owned (a requeue failed),
        the heartbeat is left to expire so that the reaper gives them back."""
        keys = self.keys(queue)
        await self.redis.delete(keys.claim(self.worker_id), keys.stop(self.worker_id))
        if await self.redis.scard(keys.owned(self.worker_id)) == 0:
            await self.redis.zrem(keys.workers, self.worker_id)

    async def wait_for_work(self, client: redis.asyncio.Redis, queue: str, timeout: float) -> bool:
        """Block on the queue's wake marker for up to `timeout` seconds; True if woken. A lost
        reply counts as a wake-up (it may have carried the marker): the claim that follows goes
        through the hot path's client, which retries, and meets an outage if there is one."""
        try:
            popped = await client.blpop([self.keys(queue).wake], timeout=timeout)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return True
        return popped is not None
