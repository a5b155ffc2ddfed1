"""What the dashboard shows about the fleet, read from Redis: queues and their counts, throughput
and failures per minute, live workers, limits and cron entries. Job lists and single jobs are in
jobd.web.jobs.

Every read is bounded whatever the size of a queue: counts are ZCARD, the oldest job is the head
of the queue (ZRANGE 0 0), the throughput chart reads the last hour's per-minute buckets (60
HGETALLs per queue, pipelined), sets are read with a limit. Nothing here writes to Redis.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio

from jobd.config.settings import Settings
from jobd.redis.keys import QueueKeys, RegistryKeys
from jobd.redis.registry import WorkerEntry, worker_entry
from jobd.redis.replies import moment, number, text

MINUTES = 60
"""The throughput chart's span: the last hour, one bar a minute."""
BUSIEST_GROUPS = 5
"""Groups of a per-group limit shown, the busiest first."""
GROUPS_READ = 200
"""Groups of a per-group limit read at most (the most recently active)."""
OK = ("succeeded",)
RETRIED = ("retried", "throttled", "lost")
FAILED = ("failed", "timed_out")
"""Outcomes per try, as the worker counts them (jobd.worker.stats): grouped for the chart."""


async def server_ms(connection: redis.asyncio.Redis) -> int:
    """Milliseconds since the epoch on the Redis server's clock (the clock jobd's scripts use)."""
    seconds, microseconds = await connection.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


def stats_key(prefix: str, queue: str, minute: int) -> str:
    """The per-minute outcome bucket (`<prefix>:{<queue>}:stats:<epoch ms // 60000>`)."""
    return f"{QueueKeys(prefix, queue).base}stats:{minute}"


# -- workers ----------------------------------------------------------------------------------


async def live_workers(
    connection: redis.asyncio.Redis, prefix: str, now_ms: int
) -> list[WorkerEntry]:
    """Workers whose registry entry is live now, by id (as `jobd status` lists them)."""
    keys = RegistryKeys(prefix)
    members = cast(list[bytes], await connection.zrange(keys.index, now_ms, "+inf", byscore=True))
    if not members:
        return []
    async with connection.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.hgetall(keys.worker(text(member)))
        replies = await pipe.execute()
    workers = [
        worker_entry(member, fields, None)
        for member, fields in zip(members, replies, strict=True)
        if fields
    ]
    return sorted(workers, key=lambda worker: worker.id)


RUNNING_SHOWN = 10
"""Running jobs listed per worker."""


async def running_jobs(
    connection: redis.asyncio.Redis, prefix: str, workers: Sequence[WorkerEntry]
) -> dict[str, list[tuple[str, str]]]:
    """Up to RUNNING_SHOWN (queue, job id) that each worker runs (its `owned:<wid>` sets, read
    with one bounded SSCAN per queue)."""
    pairs = [(worker.id, queue) for worker in workers for queue in worker.queues]
    if not pairs:
        return {}
    async with connection.pipeline(transaction=False) as pipe:
        for worker_id, queue in pairs:
            pipe.sscan(QueueKeys(prefix, queue).owned(worker_id), 0, count=RUNNING_SHOWN)
        replies = await pipe.execute()
    found: dict[str, list[tuple[str, str]]] = {worker.id: [] for worker in workers}
    for (worker_id, queue), (_, members) in zip(pairs, replies, strict=True):
        shown = found[worker_id]
        shown += [(queue, text(m)) for m in members][: RUNNING_SHOWN - len(shown)]
    return found


def known_queues(
    settings: Settings | None, extra: Sequence[str], workers: Sequence[WorkerEntry], default: str
) -> list[str]:
    """The queues to show: those of the configuration (worker.queues, then the functions') or
    else the client's default queue, those given to create_app, and those live workers consume.
    Never found by scanning keys."""
    names: list[str] = []
    if settings is not None:
        names += [*settings.worker.queues, *(f.queue for f in settings.functions.values())]
    else:
        names.append(default)
    names += list(extra)
    names += sorted({queue for worker in workers for queue in worker.queues})
    return list(dict.fromkeys(names))


# -- queue counts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCounts:
    """How many jobs of one queue are in each state, and how long the next one has waited."""

    queue: str
    queued: int
    grouped: int
    """Of `queued`, those waiting in groups (enqueue(..., group=))."""
    scheduled: int
    waiting: int
    running: int
    dead: int
    oldest_seconds: float | None
    """How long the job at the head of the queue (the next to run) has been due."""

    @property
    def total(self) -> int:
        return self.queued + self.scheduled + self.waiting + self.running + self.dead


async def queue_counts(
    connection: redis.asyncio.Redis, prefix: str, queues: Sequence[str], now_ms: int
) -> list[QueueCounts]:
    """ZCARD of each state's set and the head's due time: two round trips for any queue size."""
    if not queues:
        return []
    async with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            keys = QueueKeys(prefix, queue)
            pipe.zcard(keys.queued)
            pipe.get(keys.grouped)
            pipe.zcard(keys.scheduled)
            pipe.zcard(keys.waiting)
            pipe.zcard(keys.running)
            pipe.zcard(keys.dead)
            pipe.zrange(keys.queued, 0, 0)
        replies = await pipe.execute()
    rows = [replies[index : index + 7] for index in range(0, len(replies), 7)]
    heads = {queue: text(row[6][0]) for queue, row in zip(queues, rows, strict=True) if row[6]}
    due: dict[str, Any] = {}
    if heads:
        async with connection.pipeline(transaction=False) as pipe:
            for queue, head in heads.items():
                pipe.hget(QueueKeys(prefix, queue).job(head), "due_at")
            due = dict(zip(heads, await pipe.execute(), strict=True))
    counts = []
    for queue, (queued, grouped, scheduled, waiting, running, dead, _) in zip(
        queues, rows, strict=True
    ):
        due_ms = number(due.get(queue))
        counts.append(
            QueueCounts(
                queue=queue,
                queued=int(queued) + (number(grouped) or 0),
                grouped=number(grouped) or 0,
                scheduled=int(scheduled),
                waiting=int(waiting),
                running=int(running),
                dead=int(dead),
                oldest_seconds=None if due_ms is None else max(now_ms - due_ms, 0) / 1000,
            )
        )
    return counts


# -- throughput -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Minute:
    """What the tries that ended in one minute ended as."""

    start: datetime
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    other: int = 0
    """Aborted and anything else."""

    @property
    def total(self) -> int:
        return self.succeeded + self.retried + self.failed + self.other


@dataclass(slots=True)
class Throughput:
    """The last hour per queue, oldest minute first, and the jobs that failed per function."""

    minutes: dict[str, list[Minute]] = field(default_factory=dict)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(queue, function) -> jobs that failed for good in the last hour."""

    def combined(self) -> list[Minute]:
        """Every queue's minutes added up."""
        series = list(self.minutes.values())
        if not series:
            return []
        return [
            Minute(
                column[0].start,
                sum(m.succeeded for m in column),
                sum(m.retried for m in column),
                sum(m.failed for m in column),
                sum(m.other for m in column),
            )
            for column in zip(*series, strict=True)
        ]


async def throughput(
    connection: redis.asyncio.Redis, prefix: str, queues: Sequence[str], now_ms: int
) -> Throughput:
    """The last MINUTES per-minute buckets of each queue (jobd.worker.stats), one pipeline."""
    last = now_ms // 60_000
    minutes = range(last - MINUTES + 1, last + 1)
    result = Throughput()
    if not queues:
        return result
    async with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            for minute in minutes:
                pipe.hgetall(stats_key(prefix, queue, minute))
        replies = iter(await pipe.execute())
    for queue in queues:
        series = []
        for minute in minutes:
            counts = {text(k): number(v) or 0 for k, v in next(replies).items()}
            for name, value in counts.items():
                if name.startswith("failed:") and value:
                    result.failures[(queue, name[len("failed:") :])] += value
            plain = {k: v for k, v in counts.items() if ":" not in k}
            ok, retried, failed = (
                sum(plain.pop(name, 0) for name in names) for names in (OK, RETRIED, FAILED)
            )
            start = datetime.fromtimestamp(minute * 60, tz=UTC)
            series.append(Minute(start, ok, retried, failed, sum(plain.values())))
        result.minutes[queue] = series
    return result


# -- limits -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitDefinition:
    """A limit as workers publish it (jobd.worker.limits): [rate count, rate ms, cost count,
    cost ms, concurrency, per group]; 0 means "not limited by this"."""

    name: str
    queue: str
    rate: tuple[int, int]
    cost: tuple[int, int]
    concurrency: int
    per_group: bool


@dataclass(slots=True, kw_only=True)
class LimitUse:
    """What one budget (a limit, or one group's share) has in use now."""

    running: int = 0
    starts: int = 0
    spent: int = 0
    paused_until: datetime | None = None
    held: int = 0

    def add(self, other: LimitUse) -> None:
        self.running += other.running
        self.starts += other.starts
        self.spent += other.spent
        self.held += other.held
        if other.paused_until is not None and (
            self.paused_until is None or other.paused_until > self.paused_until
        ):
            self.paused_until = other.paused_until


@dataclass(slots=True)
class LimitRow:
    limit: LimitDefinition
    use: LimitUse
    groups: list[tuple[str, LimitUse]]
    group_count: int


def definitions(settings: Settings | None, published: dict[str, str]) -> list[LimitDefinition]:
    """The limits some function uses: from the configuration when there is one, else as the
    workers publish them in <prefix>:limits."""
    found: list[LimitDefinition] = []
    if settings is not None:
        for name, limit in settings.limits.items():
            queue = next((f.queue for f in settings.functions.values() if name in f.limits), None)
            if queue is None:
                continue

            def window(rate: Any) -> tuple[int, int]:
                return (0, 0) if rate is None else (rate.count, round(rate.period * 1000))

            found.append(
                LimitDefinition(name, queue, window(limit.rate), window(limit.cost),
                                limit.concurrency or 0, limit.per_group)
            )  # fmt: skip
        return found
    for name, raw in sorted(published.items()):
        try:
            document = json.loads(raw)
            numbers = [int(n) for n in document["definition"]]
            found.append(
                LimitDefinition(name, str(document["queue"]), (numbers[0], numbers[1]),
                                (numbers[2], numbers[3]), numbers[4], bool(numbers[5]))
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return found


def _use_commands(pipe: Any, base: str, limit: LimitDefinition, now_ms: int) -> None:
    pipe.zcard(base + "running")
    pipe.zcount(base + "starts", f"({now_ms - limit.rate[1]}", "+inf")
    pipe.zrange(base + "costs", f"({now_ms - limit.cost[1]}", "+inf", byscore=True)
    pipe.get(base + "paused")
    pipe.zcard(base + "held")


def _use(replies: Sequence[Any], limit: LimitDefinition, now_ms: int) -> LimitUse:
    running, starts, costs, paused, held = replies
    until = number(paused)
    return LimitUse(
        running=int(running),
        starts=int(starts) if limit.rate[0] else 0,
        spent=sum(number(text(m).rsplit("|", 1)[-1]) or 0 for m in costs) if limit.cost[0] else 0,
        paused_until=moment(until) if until is not None and until > now_ms else None,
        held=int(held),
    )


async def limit_rows(
    connection: redis.asyncio.Redis, prefix: str, settings: Settings | None, now_ms: int
) -> list[LimitRow]:
    """Each limit's use (as `jobd limits` shows it); per-group limits with their busiest groups,
    of the GROUPS_READ most recently active."""
    published = cast(dict[Any, Any], await connection.hgetall(RegistryKeys(prefix).limits))
    limits = definitions(settings, {text(k): text(v) for k, v in published.items()})
    rows = []
    for limit in limits:
        keys = QueueKeys(prefix, limit.queue)
        groups_key = f"{keys.limit_prefix}{limit.name}:groups"
        async with connection.pipeline(transaction=False) as pipe:
            _use_commands(pipe, keys.limit(limit.name), limit, now_ms)
            if limit.per_group:
                pipe.zcard(groups_key)
                pipe.zrange(groups_key, 0, GROUPS_READ - 1, desc=True)
            replies = await pipe.execute()
        use = _use(replies[:5], limit, now_ms)
        group_count, groups = 0, []
        if limit.per_group:
            group_count, groups = int(replies[5]), [text(g) for g in replies[6]]
        shares: list[tuple[str, LimitUse]] = []
        if groups:
            async with connection.pipeline(transaction=False) as pipe:
                for group in groups:
                    _use_commands(pipe, keys.limit(limit.name, group), limit, now_ms)
                group_replies = await pipe.execute()
            for index, group in enumerate(groups):
                share = _use(group_replies[index * 5 : index * 5 + 5], limit, now_ms)
                use.add(share)
                shares.append((group, share))
        shares.sort(key=lambda item: (-item[1].running - item[1].held, item[0]))
        rows.append(LimitRow(limit, use, shares[:BUSIEST_GROUPS], group_count))
    return rows
