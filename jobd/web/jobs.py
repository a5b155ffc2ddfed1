"""The dashboard's job lists and single jobs, read from Redis.

A list reads one page of a state's sorted set by rank (ZRANGE with offsets: O(log n + page) in a
queue of any size) and the fields its table shows (HMGET, and the arguments only where they are
small). Filters (function, group) look at a bounded window of FILTER_WINDOW jobs per page instead
of scanning the queue: the page says which positions it looked at, and "next" goes on from there.
A group's queued jobs have a set of their own, which is read directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis.asyncio

from jobd.crypto import PAYLOAD, JobSeal, Keys, event_part
from jobd.errors import DecryptError, PayloadError
from jobd.events import Progress, progress_of
from jobd.model import ErrorInfo, decode_error, decode_payload
from jobd.redis.keys import QueueKeys
from jobd.redis.replies import moment, number, text
from jobd.serializer import Serializer

STATES = ("queued", "scheduled", "running", "waiting", "dead")
PAGE_SIZE = 50
FILTER_WINDOW = 1000
"""Jobs a filtered page looks at, at most."""
PREVIEW_BYTES = 4096
"""Arguments are read for a list only when their stored payload is at most this long."""
MERGED_LIMIT = 1000
"""How deep the dead letters of every queue at once can be paged (one queue: any depth)."""
SHOWN_DEPENDANTS = 20
GROUPS_SHOWN = 50
_FIELDS = (
    "function", "status", "priority", "tries", "max_tries", "lost", "enqueued_at", "due_at",
    "started_at", "finished_at", "group", "error", "progress", "worker",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    """One job as a table row."""

    id: str
    queue: str
    exists: bool
    function: str = ""
    status: str = ""
    priority: int = 0
    tries: int = 0
    max_tries: int | None = None
    lost: int = 0
    enqueued_at: datetime | None = None
    due_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    group: str | None = None
    error: ErrorInfo | None = None
    progress: Progress | None = None
    worker: str = ""
    arguments: str | None = None
    """The call's arguments as JSON text, None when too large to read for a list."""
    payload_bytes: int = 0
    since: datetime | None = None
    """The set's score as a time: due (scheduled), started (running), failed (dead), waiting
    since (waiting); None for queued jobs, whose score is their place."""


@dataclass(slots=True, kw_only=True)
class JobPage:
    queue: str
    state: str
    rows: list[JobRow]
    total: int
    """Jobs in the set read (the group's set when filtering a group's queued jobs)."""
    offset: int
    next_offset: int | None
    order: str
    """"newest" (descending score) or "oldest"."""
    function: str | None = None
    group: str | None = None
    window: tuple[int, int] | None = None
    """With a filter: the positions (1-based, inclusive) this page looked at."""
    groups: list[str] = field(default_factory=list)
    grouped: int = 0


@dataclass(frozen=True, slots=True)
class Decoding:
    """How the pages read stored values: the client's serializer, and its encryption keys."""

    serializer: Serializer
    keys: Keys | None = None

    def seal(self, job_id: str, queue: str, function: str) -> JobSeal:
        return JobSeal(self.keys, job_id, queue, function)


def _preview(decoding: Decoding, seal: JobSeal, payload: bytes | None) -> str | None:
    if payload is None:
        return None
    try:
        args, kwargs = decode_payload(decoding.serializer, seal.open(payload, PAYLOAD))
    except DecryptError as error:
        return error.shown
    except PayloadError:
        return payload.decode(errors="replace")
    parts = [json.dumps(value, ensure_ascii=False) for value in args]
    parts += [f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in kwargs.items()]
    return ", ".join(parts)


def _progress(seal: JobSeal, raw: object) -> Progress | None:
    if not raw:
        return None
    try:
        data = seal.open(
            raw if isinstance(raw, bytes) else text(raw).encode(), event_part("progress")
        )
        return progress_of(json.loads(data))
    except (ValueError, DecryptError):
        return None


async def read_rows(
    connection: redis.asyncio.Redis,
    prefix: str,
    decoding: Decoding,
    members: Sequence[tuple[str, str, float | None]],
    *,
    scored_time: bool,
) -> list[JobRow]:
    """Rows of `members` ((queue, id, score)): two pipelined round trips, the second only for the
    arguments that are small enough to show."""
    if not members:
        return []
    async with connection.pipeline(transaction=False) as pipe:
        for queue, job_id, _ in members:
            key = QueueKeys(prefix, queue).job(job_id)
            pipe.hmget(key, list(_FIELDS))
            pipe.hstrlen(key, "payload")
        replies = await pipe.execute()
    small = [index for index, size in enumerate(replies[1::2]) if 0 < int(size) <= PREVIEW_BYTES]
    payloads: dict[int, bytes] = {}
    if small:
        async with connection.pipeline(transaction=False) as pipe:
            for index in small:
                queue, job_id, _ = members[index]
                pipe.hget(QueueKeys(prefix, queue).job(job_id), "payload")
            payloads = dict(zip(small, await pipe.execute(), strict=True))
    rows = []
    for index, (queue, job_id, score) in enumerate(members):
        values = dict(zip(_FIELDS, replies[index * 2], strict=True))
        seal = decoding.seal(job_id, queue, text(values["function"]))
        size = int(replies[index * 2 + 1])
        since = moment(int(score)) if scored_time and score is not None else None
        if values["status"] is None:
            rows.append(JobRow(id=job_id, queue=queue, exists=False, since=since))
            continue
        rows.append(
            JobRow(
                id=job_id, queue=queue, exists=True, function=text(values["function"]),
                status=text(values["status"]), priority=number(values["priority"]) or 0,
                tries=number(values["tries"]) or 0, max_tries=number(values["max_tries"]),
                lost=number(values["lost"]) or 0,
                enqueued_at=moment(number(values["enqueued_at"])),
                due_at=moment(number(values["due_at"])),
                started_at=moment(number(values["started_at"])),
                finished_at=moment(number(values["finished_at"])),
                group=text(values["group"]) or None,
                error=decode_error(cast(bytes | None, values["error"]), seal),
                progress=_progress(seal, values["progress"]), worker=text(values["worker"]),
                arguments=_preview(decoding, seal, payloads.get(index)), payload_bytes=size,
                since=since,
            )
        )  # fmt: skip
    return rows


def state_key(prefix: str, queue: str, state: str, group: str | None = None) -> str:
    keys = QueueKeys(prefix, queue)
    if state == "queued" and group:
        return keys.group(group)
    return {
        "queued": keys.queued, "scheduled": keys.scheduled, "running": keys.running,
        "waiting": keys.waiting, "dead": keys.dead,
    }[state]  # fmt: skip


async def _range(
    connection: redis.asyncio.Redis, key: str, start: int, count: int, newest: bool
) -> list[tuple[str, float]]:
    reply = await connection.zrange(key, start, start + count - 1, desc=newest, withscores=True)
    return [(text(member), float(score)) for member, score in cast(list[Any], reply)]


async def job_page(
    connection: redis.asyncio.Redis,
    prefix: str,
    decoding: Decoding,
    queue: str,
    state: str,
    *,
    offset: int = 0,
    order: str = "newest",
    function: str | None = None,
    group: str | None = None,
) -> JobPage:
    """One page of a queue's jobs in `state`, newest first (or oldest first)."""
    newest = order != "oldest"
    key = state_key(prefix, queue, state, group)
    direct_group = state == "queued" and bool(group)
    keys = QueueKeys(prefix, queue)
    async with connection.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.get(keys.grouped)
        pipe.zrange(keys.turns, 0, GROUPS_SHOWN - 1)
        total, grouped, turns = await pipe.execute()
    page = JobPage(
        queue=queue, state=state, rows=[], total=int(total), offset=offset, next_offset=None,
        order="newest" if newest else "oldest", function=function, group=group,
        groups=[text(g) for g in turns] if state == "queued" else [],
        grouped=number(grouped) or 0,
    )  # fmt: skip
    scored_time = state != "queued"
    if not function and (not group or direct_group):
        members = await _range(connection, key, offset, PAGE_SIZE, newest)
        page.rows = await read_rows(
            connection, prefix, decoding, [(queue, m, s) for m, s in members],
            scored_time=scored_time,
        )  # fmt: skip
        if offset + len(members) < page.total:
            page.next_offset = offset + len(members)
        return page
    # A filter: look at one bounded window of the set, keep the jobs that match.
    members = await _range(connection, key, offset, FILTER_WINDOW, newest)
    async with connection.pipeline(transaction=False) as pipe:
        for member, _ in members:
            pipe.hmget(keys.job(member), ["function", "group"])
        found = await pipe.execute() if members else []
    matches: list[tuple[str, str, float | None]] = []
    looked = 0
    for (member, score), (fn, grp) in zip(members, found, strict=True):
        looked += 1
        if (not function or text(fn) == function) and (
            direct_group or not group or text(grp) == group
        ):
            matches.append((queue, member, score))
            if len(matches) == PAGE_SIZE:
                break
    page.window = (offset + 1, offset + looked) if looked else None
    page.rows = await read_rows(connection, prefix, decoding, matches, scored_time=scored_time)
    if offset + looked < page.total:
        page.next_offset = offset + looked
    return page


async def dead_letters(
    connection: redis.asyncio.Redis,
    prefix: str,
    decoding: Decoding,
    queues: Sequence[str],
    offset: int,
) -> tuple[list[JobRow], int, int | None]:
    """The dead letters of `queues`, newest first: (rows, total, next offset). Over several
    queues the newest of each are merged, down to MERGED_LIMIT."""
    async with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(QueueKeys(prefix, queue).dead)
        totals = [int(count) for count in await pipe.execute()]
    total = sum(totals)
    if len(queues) == 1:
        members = [(queues[0], m, s) for m, s in await _range(
            connection, QueueKeys(prefix, queues[0]).dead, offset, PAGE_SIZE, True)]  # fmt: skip
    else:
        offset = min(offset, MERGED_LIMIT)
        depth = offset + PAGE_SIZE
        async with connection.pipeline(transaction=False) as pipe:
            for queue, count in zip(queues, totals, strict=True):
                if count:
                    pipe.zrange(QueueKeys(prefix, queue).dead, 0, depth - 1, desc=True,
                                withscores=True)  # fmt: skip
            replies = iter(await pipe.execute())
        merged = [
            (queue, text(member), float(score))
            for queue, count in zip(queues, totals, strict=True)
            if count
            for member, score in next(replies)
        ]
        merged.sort(key=lambda entry: entry[2], reverse=True)
        members = merged[offset:depth]
    rows = await read_rows(connection, prefix, decoding, members, scored_time=True)
    end = offset + len(members)
    more = end < total and (len(queues) == 1 or end < MERGED_LIMIT)
    return rows, total, end if more else None


async def next_scheduled(
    connection: redis.asyncio.Redis,
    prefix: str,
    decoding: Decoding,
    queues: Sequence[str],
    limit: int,
) -> list[tuple[str, int, list[JobRow]]]:
    """Per queue: how many jobs are scheduled and the `limit` due soonest."""
    async with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            key = QueueKeys(prefix, queue).scheduled
            pipe.zcard(key)
            pipe.zrange(key, 0, limit - 1, withscores=True)
        replies = await pipe.execute()
    found = []
    for index, queue in enumerate(queues):
        members = [(queue, text(m), float(s)) for m, s in replies[index * 2 + 1]]
        rows = await read_rows(connection, prefix, decoding, members, scored_time=True)
        found.append((queue, int(replies[index * 2]), rows))
    return found


@dataclass(frozen=True, slots=True)
class Linked:
    queue: str
    id: str
    status: str


@dataclass(frozen=True, slots=True)
class Links:
    """A job's parents, and up to SHOWN_DEPENDANTS of its dependants that have not ended."""

    parents: list[Linked]
    dependants: list[Linked]
    more_dependants: int


async def graph_links(
    connection: redis.asyncio.Redis, prefix: str, queue: str, job_id: str,
    parents: Sequence[tuple[str, str]],
) -> Links:  # fmt: skip
    """Like `jobd job show`'s (jobd.cli.jobs.graph_links), for the dashboard's async client."""
    key = QueueKeys(prefix, queue).dependants(job_id)
    _, members = await connection.sscan(key, 0, count=SHOWN_DEPENDANTS)
    total = int(await connection.scard(key))
    dependants = [tuple(text(m).partition(" ")[::2]) for m in members[:SHOWN_DEPENDANTS]]
    rows = [*parents, *dependants]
    statuses: list[str] = []
    if rows:
        async with connection.pipeline(transaction=False) as pipe:
            for row_queue, row_id in rows:
                pipe.hget(QueueKeys(prefix, row_queue).job(row_id), "status")
            statuses = [text(s) or "not_found" for s in await pipe.execute()]
    linked = [Linked(q, j, s) for (q, j), s in zip(rows, statuses, strict=True)]
    return Links(linked[: len(parents)], linked[len(parents) :], max(0, total - len(dependants)))


async def event_count(connection: redis.asyncio.Redis, prefix: str, queue: str, job_id: str) -> int:
    """How many events the job's stream has had (0: it has none)."""
    return number(await connection.hget(QueueKeys(prefix, queue).job(job_id), "ev")) or 0


async def locate(
    connection: redis.asyncio.Redis, prefix: str, queues: Sequence[str], job_id: str
) -> str | None:
    """The first of `queues` that holds job `job_id`."""
    async with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.exists(QueueKeys(prefix, queue).job(job_id))
        found = await pipe.execute()
    return next((queue for queue, hit in zip(queues, found, strict=True) if hit), None)
