"""The worker registry as operator tools read it (`jobd status`, the dashboard): one entry per live
worker, from its hash (see jobd.redis.keys.RegistryKeys)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jobd.redis.replies import moment, number, text


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEntry:
    """One live worker as it publishes itself in the registry."""

    id: str
    host: str
    pid: int | None
    queues: tuple[str, ...]
    concurrency: int | None
    running: int | None
    processed: int | None
    version: str
    started_at: datetime | None
    heartbeat_at: datetime | None
    live_until: datetime | None


def worker_entry(
    member: object, fields: Mapping[object, object], live_until_ms: int | None
) -> WorkerEntry:
    """The entry of worker `member` from its registry hash (HGETALL) and index score."""
    field = {text(key): value for key, value in fields.items()}
    return WorkerEntry(
        id=text(member),
        host=text(field.get("host")),
        pid=number(field.get("pid")),
        queues=tuple(name for name in text(field.get("queues")).split(",") if name),
        concurrency=number(field.get("concurrency")),
        running=number(field.get("running")),
        processed=number(field.get("processed")),
        version=text(field.get("version")),
        started_at=moment(number(field.get("started_at"))),
        heartbeat_at=moment(number(field.get("heartbeat_at"))),
        live_until=moment(live_until_ms),
    )
