"""`jobd limits` (and the limits part of `jobd status`): each limit's use across the fleet, read
from Redis: slots in use, starts and cost in the current window, a pause, the jobs it holds back,
and for a per-group limit the busiest groups."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from jobd.cli.shared import (
    connect,
    format_moment,
    print_json,
    server_ms,
    table,
)
from jobd.config.limits import owner_queue
from jobd.config.settings import LimitSettings, Rate, Settings
from jobd.redis.keys import QueueKeys, member_text
from jobd.redis.replies import moment

BUSIEST_GROUPS = 5
"""Groups of a per-group limit shown, the busiest first."""
LIMIT_COLUMNS = ("LIMIT", "QUEUE", "RUNNING", "STARTS", "COST", "PAUSED UNTIL", "WAITING")


@dataclass(slots=True, kw_only=True)
class Use:
    """What one budget (a limit, or one group's share of a per-group limit) has in use."""

    running: int = 0
    starts: int = 0
    spent: int = 0
    paused_until_ms: int | None = None
    waiting: int = 0

    def add(self, other: Use) -> None:
        self.running += other.running
        self.starts += other.starts
        self.spent += other.spent
        self.waiting += other.waiting
        if other.paused_until_ms is not None:
            self.paused_until_ms = max(self.paused_until_ms or 0, other.paused_until_ms)


@dataclass(slots=True, kw_only=True)
class LimitRow:
    limit: str
    queue: str
    settings: LimitSettings
    use: Use
    groups: dict[str, Use] = field(default_factory=dict)


def _window_start(rate: Rate | None, now_ms: int) -> int:
    return now_ms - round(rate.period * 1000) if rate is not None else now_ms


def read_use(connection: redis.Redis, base: str, limit: LimitSettings, now_ms: int) -> Use:
    pipe = connection.pipeline(transaction=False)
    pipe.zcard(base + "running")
    pipe.zcount(base + "starts", f"({_window_start(limit.rate, now_ms)}", "+inf")
    pipe.zrange(base + "costs", f"({_window_start(limit.cost, now_ms)}", "+inf", byscore=True)
    pipe.get(base + "paused")
    pipe.zcard(base + "held")
    running, starts, costs, paused, held = pipe.execute()
    until = int(paused) if paused else None
    return Use(
        running=int(running),
        starts=int(starts) if limit.rate is not None else 0,
        spent=sum(int(member.rsplit(b"|", 1)[1]) for member in costs),
        paused_until_ms=until if until is not None and until > now_ms else None,
        waiting=int(held),
    )


def limit_rows(
    connection: redis.Redis, prefix: str, settings: Settings, now_ms: int
) -> list[LimitRow]:
    """The use of every limit some function names (unused ones hold nothing)."""
    rows = []
    for name, limit in settings.limits.items():
        queue = owner_queue(settings.functions, name)
        if queue is None:
            continue
        keys = QueueKeys(prefix, queue)
        row = LimitRow(limit=name, queue=queue, settings=limit, use=Use())
        row.use.add(read_use(connection, keys.limit(name), limit, now_ms))
        if limit.per_group:
            # groups that started a job within the longest of the limit's windows (and a lease)
            recent = connection.zrange(f"{keys.limit_prefix}{name}:groups", 0, -1)
            for raw in recent:
                group = member_text(raw)
                use = read_use(connection, keys.limit(name, group), limit, now_ms)
                row.groups[group] = use
                row.use.add(use)
        rows.append(row)
    return rows


def _share(used: int, rate: Rate | int | None) -> str:
    if rate is None:
        return str(used) if used else "-"
    return f"{used} of {rate}"


def _cells(use: Use, limit: LimitSettings) -> list[str]:
    return [
        _share(use.running, limit.concurrency),
        _share(use.starts, limit.rate),
        _share(use.spent, limit.cost),
        format_moment(moment(use.paused_until_ms)) if use.paused_until_ms else "-",
        str(use.waiting),
    ]


def busiest(row: LimitRow) -> list[tuple[str, Use]]:
    ranked = sorted(
        row.groups.items(), key=lambda item: (-item[1].running - item[1].waiting, item[0])
    )
    return ranked[:BUSIEST_GROUPS]


def print_limits(rows: list[LimitRow]) -> None:
    lines: list[list[Any]] = []
    for row in rows:
        lines.append([row.limit, row.queue, *_cells(row.use, row.settings)])
        for group, use in busiest(row):
            lines.append([f"  group {group}", "", *_cells(use, row.settings)])
    print(table(LIMIT_COLUMNS, lines))


def as_document(row: LimitRow) -> dict[str, Any]:
    limit = row.settings
    return {
        "limit": row.limit,
        "queue": row.queue,
        "concurrency": limit.concurrency,
        "rate": str(limit.rate) if limit.rate else None,
        "cost": str(limit.cost) if limit.cost else None,
        "per_group": limit.per_group,
        **asdict(row.use),
        "paused_until": moment(row.use.paused_until_ms),
        "groups": [{"group": group, **asdict(use)} for group, use in busiest(row)],
    }


def limits_list(settings: Settings, *, as_json: bool) -> int:
    """`jobd limits`: every limit's use now."""
    with connect(settings) as client:
        rows = limit_rows(client.redis, client.key_prefix, settings, server_ms(client.redis))
    if as_json:
        print_json([as_document(row) for row in rows])
        return 0
    if not rows:
        print("no limits: add [limits.NAME] tables and name them in a function's `limits`")
        return 0
    print_limits(rows)
    return 0
