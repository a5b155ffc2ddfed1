"""`jobd status`: job counts per queue, the live workers, and the cron entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from jobd.cli.cron import cron_rows, print_cron
from jobd.cli.limits import as_document, limit_rows, print_limits
from jobd.cli.shared import (
    connect,
    live_workers,
    print_json,
    queues_to_report,
    server_ms,
    table,
)
from jobd.config.durations import format_age
from jobd.config.settings import Settings
from jobd.redis.keys import QueueKeys
from jobd.redis.registry import WorkerEntry
from jobd.redis.replies import moment, number, text


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """How many jobs of one queue are in each state, and how long the next one has waited."""

    queue: str
    queued: int
    scheduled: int
    waiting: int
    """Jobs waiting for their parents (enqueue(..., after=...))."""
    running: int
    dead: int
    oldest_seconds: float | None
    """Age (now - due_at) of the job at the head of `queued`; None when nothing is queued."""


def queue_states(
    connection: redis.Redis, prefix: str, queues: Sequence[str], now_ms: int
) -> list[QueueState]:
    pipe = connection.pipeline(transaction=False)
    for queue in queues:
        keys = QueueKeys(prefix, queue)
        pipe.zcard(keys.queued)
        pipe.zcard(keys.scheduled)
        pipe.zcard(keys.running)
        pipe.zcard(keys.dead)
        pipe.zrange(keys.queued, 0, 0)
        pipe.get(keys.grouped)
        pipe.zcard(keys.waiting)
    replies = pipe.execute()
    counts = [replies[index : index + 7] for index in range(0, len(replies), 7)]
    heads = {
        queue: text(reply[4][0]) for queue, reply in zip(queues, counts, strict=True) if reply[4]
    }
    pipe = connection.pipeline(transaction=False)
    for queue, head in heads.items():
        pipe.hget(QueueKeys(prefix, queue).job(head), "due_at")
    due = dict(zip(heads, pipe.execute(), strict=True)) if heads else {}
    states = []
    for queue, (queued, scheduled, running, dead, _, grouped, waiting) in zip(
        queues, counts, strict=True
    ):
        due_ms = number(due.get(queue))
        states.append(
            QueueState(
                queue=queue,
                queued=int(queued) + int(grouped or 0),
                scheduled=int(scheduled),
                waiting=int(waiting),
                running=int(running),
                dead=int(dead),
                oldest_seconds=None if due_ms is None else max(now_ms - due_ms, 0) / 1000,
            )
        )
    return states


def status(settings: Settings, *, restrict: Sequence[str] | None, as_json: bool) -> int:
    """`jobd status`: job counts per queue, the live workers, the limits and the cron entries."""
    with connect(settings) as client:
        now_ms = server_ms(client.redis)
        workers = live_workers(client.redis, client.key_prefix, now_ms)
        queues = queues_to_report(settings, workers, restrict)
        states = queue_states(client.redis, client.key_prefix, queues, now_ms)
        limits = limit_rows(client.redis, client.key_prefix, settings, now_ms)
    if restrict:
        limits = [row for row in limits if row.queue in queues]
        workers = [worker for worker in workers if set(worker.queues) & set(queues)]
    if as_json:
        print_json(
            {
                "time": moment(now_ms),
                "queues": [dataclasses.asdict(state) for state in states],
                "workers": [dataclasses.asdict(worker) for worker in workers],
                "cron": cron_rows(settings) if settings.cron else [],
                "limits": [as_document(row) for row in limits],
            }
        )
        return 0
    print(
        table(
            ["QUEUE", "QUEUED", "SCHEDULED", "WAITING", "RUNNING", "DEAD", "OLDEST"],
            [
                [
                    state.queue,
                    state.queued,
                    state.scheduled,
                    state.waiting,
                    state.running,
                    state.dead,
                    format_age(state.oldest_seconds),
                ]
                for state in states
            ],
        )
    )
    print()
    if not workers:
        print("no live workers")
    else:
        print(f"{len(workers)} live worker{'s' if len(workers) != 1 else ''}")
        print(table(WORKER_COLUMNS, [_worker_row(worker, moment(now_ms)) for worker in workers]))
    if limits:
        print()
        print_limits(limits)
    if settings.cron:
        print()
        print_cron(cron_rows(settings))
    return 0


WORKER_COLUMNS = (
    "WORKER", "HOST", "PID", "QUEUES", "RUNNING", "CONCURRENCY", "PROCESSED", "UP", "HEARTBEAT",
    "VERSION",
)  # fmt: skip


def _worker_row(worker: WorkerEntry, now: datetime | None) -> list[Any]:
    return [
        worker.id,
        worker.host or "-",
        worker.pid,
        ",".join(worker.queues) or "-",
        worker.running,
        worker.concurrency,
        worker.processed,
        _since(now, worker.started_at),
        _since(now, worker.heartbeat_at, suffix=" ago"),
        worker.version or "-",
    ]


def _since(now: datetime | None, then: datetime | None, *, suffix: str = "") -> str:
    if now is None or then is None:
        return "-"
    return format_age((now - then).total_seconds()) + suffix
