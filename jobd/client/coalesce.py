"""Coalescing of concurrent enqueues (auto-pipelining, as ioredis does it): `Client.enqueue` calls
made while an equal one is in flight go to Redis together, as one enqueue.lua call.

Each enqueue script call is keyed by what the script shares across its jobs: its four fixed keys
(the queue's) and ARGV[1..9] (queue, priority, max_tries, timeout, delay, at, expires, group,
cost), and whether it must wait for a replica. Calls whose keys differ never share a script
call. The trace headers (ARGV[10]) are not in the key: a traced producer gives every call its own,
and calls whose headers differ go with each job's own (ARGV[10] '*', see enqueue.lua). Per key:

- nothing in flight: the call is sent at once, from the caller's own task (no timer, no extra
  loop tick: a lone enqueue costs what it did);
- one in flight: the call waits in `pending`; when the in-flight call returns, everything pending
  goes in one script call (in chunks of at most MAX_JOBS jobs and about MAX_BYTES of arguments,
  sent one after the other so that jobs are stored in call order), from a task of the
  coalescer's own, so that no caller's cancellation cancels it.

Why "when the in-flight call returns" and not "at the end of the loop tick": batches then grow
with the load (as many jobs as arrived during one round trip) and at most one script call per key
is in flight, so 200 enqueues gathered in one tick make exactly two calls (the first alone, the
other 199 together), whatever the scheduling; a tick flush would make many small calls under a
steady stream of requests, each paying Redis's per-request cost that coalescing exists to save.

Each caller gets its own slice of the reply (enqueue.lua returns two values per job, in ARGV
order), so its own `created` flag; a Redis or connection error of the call is raised to every
caller of that batch. A caller cancelled while its job waits in `pending` drops the job (it was
not sent, as a lone enqueue cancelled before it is written); once the batch is sent, its other
callers get their results whatever happens to the cancelled one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from jobd.client.operations import ScriptCall

SCRIPT = "enqueue"
"""The script whose calls are coalesced."""
FIXED_KEYS = 4
"""enqueue.lua: KEYS[1..4] are the queue's, KEYS[5..] one job hash per job."""
SHARED_ARGS = 10
"""enqueue.lua: ARGV[1..10] apply to every job of the call."""
HEADERS = 9
"""enqueue.lua: ARGV[10], the trace headers; '*' when each job carries its own."""
PER_JOB_ARGS = 4
"""enqueue.lua: id, function, payload, signature per job (and its headers after '*')."""
REPLY_PER_JOB = 2
"""enqueue.lua returns, per job, created (1/0) and its status."""
MAX_JOBS = 1000
"""Jobs per coalesced script call: Redis runs a script alone, so this bounds the time one call
holds the server."""
MAX_BYTES = 4 << 20
"""Per-job argument bytes per coalesced script call (payloads dominate): bounds Redis's query
buffer and the script's run time when payloads are large. One job larger than this goes alone."""

Perform = Callable[[ScriptCall], Awaitable[Any]]
LaneKey = tuple[Any, ...]


@dataclass(slots=True)
class _Waiter:
    request: ScriptCall
    future: asyncio.Future[Any]
    jobs: int
    size: int


@dataclass(slots=True)
class _Lane:
    """The calls of one key: one in flight at most, and those waiting for it."""

    loop: asyncio.AbstractEventLoop
    idle: asyncio.Future[None]
    """Done once no call of the lane is in flight or waiting (the lane is dropped)."""
    pending: list[_Waiter] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


def coalescible(request: ScriptCall) -> bool:
    return request.name == SCRIPT and len(request.keys) > FIXED_KEYS


class Coalescer:
    """Coalesces concurrent enqueue script calls of one client (see the module docstring).
    `perform` sends one ScriptCall and returns its reply (Client._perform)."""

    def __init__(self, perform: Perform, *, max_jobs: int = MAX_JOBS, max_bytes: int = MAX_BYTES):
        self._perform = perform
        self._max_jobs = max_jobs
        self._max_bytes = max_bytes
        self._lanes: dict[LaneKey, _Lane] = {}
        """Keys with a call in flight; a key leaves when its last call returns (no leak, even when
        every call has a key of its own, as with per-call trace headers)."""

    async def call(self, request: ScriptCall) -> Any:
        """Send `request` (an enqueue.lua call), alone or with others of its key; its reply."""
        key = (request.durable, *request.keys[:FIXED_KEYS], *request.args[:HEADERS])
        lane = self._lanes.get(key)
        loop = asyncio.get_running_loop()
        if lane is None or lane.loop is not loop:  # (a lane of a loop that died is dropped)
            lane = self._lanes[key] = _Lane(loop, loop.create_future())
            try:
                return await self._perform(request)
            finally:
                self._released(key, lane)
        jobs = len(request.keys) - FIXED_KEYS
        # per-job arguments are str and bytes (id, function, payload, signature)
        size = sum(map(len, cast("list[str | bytes]", request.args[SHARED_ARGS:])))
        waiter = _Waiter(request, lane.loop.create_future(), jobs, size)
        lane.pending.append(waiter)
        return await waiter.future

    async def wait_idle(self) -> None:
        """Until every call of this loop has returned, and those waiting for it (Client.close)."""
        loop = asyncio.get_running_loop()
        while idle := [lane.idle for lane in self._lanes.values() if lane.loop is loop]:
            await asyncio.wait(idle)

    def _released(self, key: LaneKey, lane: _Lane) -> None:
        """The in-flight call of `lane` returned (or failed, or its caller was cancelled)."""
        if not lane.pending:
            self._drop(key, lane)
        elif lane.flusher is None:
            lane.flusher = lane.loop.create_task(self._flush(key, lane))

    async def _flush(self, key: LaneKey, lane: _Lane) -> None:
        """Send what is pending, and again what arrived meanwhile, until nothing is."""
        try:
            while lane.pending:
                waiting, lane.pending = lane.pending, []
                live = [waiter for waiter in waiting if not waiter.future.cancelled()]
                for chunk in self._chunks(live):  # one after the other: jobs keep call order
                    await self._send(chunk)
        finally:
            self._drop(key, lane)
            for waiter in lane.pending:  # only if this task itself was cancelled (loop shutdown)
                waiter.future.cancel()

    def _drop(self, key: LaneKey, lane: _Lane) -> None:
        if self._lanes.get(key) is lane:
            del self._lanes[key]
        if not lane.idle.done():
            lane.idle.set_result(None)

    def _chunks(self, waiters: list[_Waiter]) -> list[list[_Waiter]]:
        chunks: list[list[_Waiter]] = []
        jobs = size = 0
        for waiter in waiters:
            if (
                not chunks
                or jobs + waiter.jobs > self._max_jobs
                or size + waiter.size > self._max_bytes
            ):
                chunks.append([])
                jobs = size = 0
            chunks[-1].append(waiter)
            jobs += waiter.jobs
            size += waiter.size
        return chunks

    async def _send(self, waiters: list[_Waiter]) -> None:
        """One script call for `waiters`; each gets its slice of the reply, or the error."""
        waiters = [waiter for waiter in waiters if not waiter.future.cancelled()]
        if not waiters:
            return
        first = waiters[0].request
        if len(waiters) == 1:
            request = first
        else:
            keys = list(first.keys[:FIXED_KEYS])
            args = list(first.args[:SHARED_ARGS])
            own_headers = any(w.request.args[HEADERS] != first.args[HEADERS] for w in waiters)
            if own_headers:
                args[HEADERS] = "*"
            for waiter in waiters:
                keys += waiter.request.keys[FIXED_KEYS:]
                values = waiter.request.args[SHARED_ARGS:]
                if not own_headers:
                    args += values
                    continue
                headers = waiter.request.args[HEADERS]
                for start in range(0, len(values), PER_JOB_ARGS):
                    args += [*values[start : start + PER_JOB_ARGS], headers]
            request = ScriptCall(first.name, keys, args, durable=first.durable)
        try:
            reply = await self._perform(request)
        except Exception as error:  # noqa: BLE001 - handed to every caller of the batch
            _fail(waiters, error)
            return
        except BaseException:  # this task cancelled (the loop shuts down): so are its callers
            for waiter in waiters:
                waiter.future.cancel()
            raise
        jobs = sum(waiter.jobs for waiter in waiters)
        if not isinstance(reply, list) or len(reply) != jobs * REPLY_PER_JOB:
            _fail(waiters, RuntimeError(f"enqueue.lua gave {reply!r:.100} for {jobs} jobs"))
            return
        offset = 0
        for waiter in waiters:
            end = offset + waiter.jobs * REPLY_PER_JOB
            if not waiter.future.done():
                waiter.future.set_result(reply[offset:end])
            offset = end


def _fail(waiters: list[_Waiter], error: Exception) -> None:
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_exception(error)
