"""Producer operations written once, without I/O: each is a generator that yields Redis requests and
receives their replies, so the async `Client` and the `SyncClient` drive the same code."""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobd import crypto
from jobd.client import tracing
from jobd.errors import (
    InvalidJobOption,
    JobAborted,
    JobFailed,
    JobNotFound,
    NotReplicated,
    UnknownFunction,
)
from jobd.model import (
    MAX_PRIORITY,
    JobInfo,
    JobStatus,
    check_job_id,
    decode_error,
    encode_payload,
    job_info,
)
from jobd.redis.keys import NAME_PATTERN, QueueKeys
from jobd.redis.scripts import Argument
from jobd.serializer import Serializer
from jobd.signing import sign

RESULT_BLOCK_SECONDS = 5.0
"""Longest single blocking wait for a result: well below the socket timeout, which would otherwise
turn a quiet wait into a TimeoutError (docs/reliability.md, finding 3)."""
ABORTED_KEEP_MS = 3_600_000
"""How long an aborted job's record stays visible."""


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Run a Lua script (see jobd/redis/scripts.py)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Argument]
    durable: bool = False
    """A write that `enqueue_durability = "replica"` makes wait for a replica."""


@dataclass(frozen=True, slots=True)
class Command:
    """Run one plain Redis command."""

    args: tuple[Argument, ...]


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long before the next request (the client sleeps: asyncio.sleep or time.sleep)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ScriptBatch:
    """Run one Lua script once per (keys, args), in one pipeline: the replies in order, with an
    exception object for a call Redis refused."""

    name: str
    calls: Sequence[tuple[Sequence[str], Sequence[Argument]]]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand `items` to the reader of a streaming operation (Client.stream); the reply is None."""

    items: Sequence[Any]


Request = ScriptCall | ScriptBatch | Command | Pause | Deliver
Operation = Generator[Request, Any, Any]


@dataclass(frozen=True, slots=True)
class JobRef:
    """What identifies a job: its id and its queue (the queue is part of every key)."""

    id: str
    queue: str
    created: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueOptions:
    """Validated options of one enqueue call, in the units the script takes."""

    queue: str
    priority: int = 0
    group: str | None = None
    cost: int | None = None
    max_tries: int | None = None
    timeout_ms: int | None = None
    delay_ms: int | None = None
    at_ms: int | None = None
    expires_ms: int | None = None


def check_queue(queue: str) -> str:
    if not isinstance(queue, str) or not NAME_PATTERN.match(queue):
        raise InvalidJobOption(
            f"queue {queue!r} is not a valid queue name: use 1-100 letters, digits, '_', '.', ':' "
            "or '-'"
        )
    return queue


def check_function(function: str) -> str:
    if not isinstance(function, str) or not NAME_PATTERN.match(function):
        raise InvalidJobOption(
            f"function name {function!r} is not valid: use the name of a [functions] table "
            "(letters, digits, '_', '.', ':' or '-')"
        )
    return function


def _seconds(name: str, value: float | timedelta | None, *, allow_zero: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidJobOption(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidJobOption(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return round(value * 1000)


def enqueue_options(
    *,
    queue: str,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int = 0,
    max_tries: int | None = None,
    timeout: float | timedelta | None = None,
    expires: float | timedelta | None = None,
    group: str | None = None,
    cost: int | None = None,
) -> EnqueueOptions:
    """Check every enqueue option and convert it; InvalidJobOption names the bad one."""
    if (
        delay is None and at is None and max_tries is None and timeout is None
        and expires is None and priority == 0 and type(priority) is int and type(queue) is str
        and group is None and cost is None
    ):  # fmt: skip
        return _plain_options(queue)
    if delay is not None and at is not None:
        raise InvalidJobOption("give either delay or at, not both")
    at_ms = None
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidJobOption(f"at must be a timezone-aware datetime, got {at!r}")
        at_ms = round(at.timestamp() * 1000)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidJobOption(f"priority must be an integer, got {priority!r}")
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidJobOption(
            f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}, got {priority}"
        )
    if max_tries is not None and (
        isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1
    ):
        raise InvalidJobOption(f"max_tries must be an integer >= 1, got {max_tries!r}")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 1):
        raise InvalidJobOption(f"cost must be an integer >= 1, got {cost!r}")
    return EnqueueOptions(
        queue=check_queue(queue),
        priority=priority,
        max_tries=max_tries,
        timeout_ms=_seconds("timeout", timeout, allow_zero=False),
        delay_ms=_seconds("delay", delay, allow_zero=True),
        at_ms=at_ms,
        expires_ms=_seconds("expires", expires, allow_zero=False),
        group=None if group is None else check_job_id(group, "group"),
        cost=cost,
    )


@functools.lru_cache(maxsize=256)
def _plain_options(queue: str) -> EnqueueOptions:
    """The options of an enqueue that sets none, per queue: most calls, checked once."""
    return EnqueueOptions(queue=check_queue(queue))


@functools.lru_cache(maxsize=256)
def _enqueue_keys(prefix: str, queue: str) -> tuple[tuple[str, ...], str]:
    """The four fixed keys of enqueue.lua and the prefix of job keys, built once per queue."""
    keys = QueueKeys(prefix, queue)
    return (keys.queued, keys.scheduled, keys.seq, keys.wake), keys.job_prefix


def new_job_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` gives it, without the
    UUID object: a tenth of the instructions of building an enqueue went there."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def _blank(value: int | None) -> Argument:
    return "" if value is None else value


def enqueue(
    prefix: str,
    options: EnqueueOptions,
    calls: Iterable[tuple[str, tuple[Any, ...], dict[str, Any]]],
    serializer: Serializer,
    *,
    job_ids: Sequence[str | None] | None = None,
    strict: bool = False,
    signing_key: bytes | None = None,
    tracer: Any = None,
    keys: crypto.Keys | None = None,
) -> Operation:
    """Store jobs of one queue in one script call; returns their JobRefs in order. With `keys`,
    each payload is encrypted for its job (jobd.crypto); with `signing_key`, each job carries its
    signature (jobd.signing), made over the stored (encrypted) payload; with `tracer`, the call is
    a `send` span whose context the jobs carry (jobd.client.tracing)."""
    fixed_keys, job_prefix = _enqueue_keys(prefix, options.queue)
    calls = list(calls)
    ids = [
        check_job_id(i) if i is not None else new_job_id() for i in job_ids or [None] * len(calls)
    ]
    names = [check_function(function) for function, _, _ in calls]
    payloads = [encode_payload(serializer, args, kwargs) for _, args, kwargs in calls]
    if keys is not None:
        payloads = [
            keys.encrypt(p, job_id=i, queue=options.queue, function=name, part=crypto.PAYLOAD)
            for i, name, p in zip(ids, names, payloads, strict=True)
        ]
    if strict:
        yield from check_registered(prefix, options.queue, set(names))
    send = tracing.start_send(tracer, options.queue, ids, names) if tracer is not None else None
    headers = send.headers if send is not None else b""
    arguments: list[Argument] = [
        options.queue,
        options.priority,
        _blank(options.max_tries),
        _blank(options.timeout_ms),
        _blank(options.delay_ms),
        _blank(options.at_ms),
        _blank(options.expires_ms),
        options.group or "",
        _blank(options.cost),
        headers,
    ]
    for job_id, name, payload in zip(ids, names, payloads, strict=True):
        signature = (
            sign(signing_key, job_id, options.queue, name, payload, headers) if signing_key else b""
        )
        arguments += [job_id, name, payload, signature]
    try:
        reply = yield ScriptCall(
            "enqueue", [*fixed_keys, *[job_prefix + job_id for job_id in ids]], arguments,
            durable=True,
        )  # fmt: skip
    except NotReplicated as error:
        tracing.end_send(send, error)
        raise NotReplicated(f"{error}; job ids: {', '.join(ids)}", ids) from None
    except Exception as error:
        tracing.end_send(send, error)
        raise
    tracing.end_send(send)
    return [
        JobRef(job_id, options.queue, created=bool(reply[2 * index]))
        for index, job_id in enumerate(ids)
    ]


def check_registered(prefix: str, queue: str, functions: set[str]) -> Operation:
    """Raise UnknownFunction unless a live worker of `queue` registers every name."""
    names = sorted(functions)
    server_time = yield Command(("TIME",))
    now_ms = int(server_time[0]) * 1000 + int(server_time[1]) // 1000
    until = yield Command(("HMGET", QueueKeys(prefix, queue).functions, *names))
    missing = [
        name for name, value in zip(names, until, strict=True) if not value or int(value) < now_ms
    ]
    if missing:
        raise UnknownFunction(
            f"no live worker consuming queue {queue!r} registers {', '.join(map(repr, missing))}"
        )


def status(prefix: str, ref: JobRef) -> Operation:
    value = yield Command(("HGET", QueueKeys(prefix, ref.queue).job(ref.id), "status"))
    return JobStatus(value.decode()) if value else JobStatus.NOT_FOUND


def info(
    prefix: str, ref: JobRef, serializer: Serializer, keys: crypto.Keys | None = None
) -> Operation:
    fields = yield Command(("HGETALL", QueueKeys(prefix, ref.queue).job(ref.id)))
    if not fields:
        return None
    result: JobInfo = job_info(ref.id, fields, serializer, keys)
    return result


def _outcome(
    ref: JobRef, state: list[Any] | None, serializer: Serializer, seal: crypto.JobSeal
) -> tuple[bool, Any]:
    """(ended, value) from observe.lua's reply; raises for failed, aborted and missing jobs, and
    DecryptError for a result encrypted with a key that is not configured."""
    if not state:
        raise JobNotFound(f"job {ref.id} not found in queue {ref.queue!r}")
    current = state[0].decode() if state[0] else ""
    if current == JobStatus.SUCCEEDED:
        value = seal.open(state[1], crypto.RESULT) if state[1] else None
        return True, serializer.loads(value, what=f"result of job {ref.id}") if value else None
    if current == JobStatus.FAILED:
        error = decode_error(state[2], seal)
        assert error is not None
        raise JobFailed(ref.id, error.type, error.message, error.traceback)
    if current == JobStatus.ABORTED:
        raise JobAborted(ref.id)
    return False, None


def result(
    prefix: str,
    ref: JobRef,
    serializer: Serializer,
    timeout: float | None,
    encryption: crypto.Keys | None = None,
) -> Operation:
    """Wait for the job to end: its return value, or JobFailed / JobAborted / TimeoutError
    (DecryptError for a result encrypted with a key `encryption` does not hold).

    Blocks on the job's done list (pushed by the script that ends the job), never on a sleep loop.
    """
    keys = QueueKeys(prefix, ref.queue)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = yield ScriptCall("observe", [keys.job(ref.id)], [])
        seal = yield from _seal_for(keys, ref, state, encryption)
        ended, value = _outcome(ref, state, serializer, seal)
        if ended:
            return value
        block = RESULT_BLOCK_SECONDS
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {ref.id} did not finish within {timeout} s")
            block = min(block, remaining)
        done = keys.done(ref.id)
        # BLMOVE onto the same list rotates instead of consuming, so every waiter sees the marker.
        yield Command(("BLMOVE", done, done, "RIGHT", "LEFT", max(block, 0.01)))


def _seal_for(
    keys: QueueKeys, ref: JobRef, state: list[Any] | None, encryption: crypto.Keys | None
) -> Operation:
    """What opens the job's encrypted result and error. With keys, its binding needs the job's
    function, read only when the job has encrypted values (observe.lua does not return it)."""
    function = b""
    if encryption is not None and state and any(crypto.MARK in (v or b"") for v in state[1:]):
        function = yield Command(("HGET", keys.job(ref.id), "function"))
    return crypto.JobSeal(encryption, ref.id, ref.queue, (function or b"").decode())


def abort(prefix: str, ref: JobRef, timeout: float) -> Operation:
    """Abort the job; True if it will not run or was cancelled within `timeout` seconds."""
    keys = QueueKeys(prefix, ref.queue)
    reply = yield ScriptCall(
        "abort",
        [keys.job(ref.id), keys.queued, keys.scheduled, keys.done(ref.id)],
        [ref.id, keys.aborts, ABORTED_KEEP_MS],
    )
    outcome = reply.decode()
    if outcome == "aborted":
        return True
    if outcome != "requested":
        return False
    deadline = time.monotonic() + timeout
    while True:
        state = yield ScriptCall("observe", [keys.job(ref.id)], [])
        current = state[0].decode() if state and state[0] else ""
        if current in (JobStatus.ABORTED, JobStatus.SUCCEEDED, JobStatus.FAILED, ""):
            return current == JobStatus.ABORTED
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        done = keys.done(ref.id)
        yield Command(("BLMOVE", done, done, "RIGHT", "LEFT", max(min(remaining, 1.0), 0.01)))
