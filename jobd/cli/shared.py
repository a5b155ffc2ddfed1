"""What the operator commands share (`jobd status`, `job`, `dead`, `enqueue`): a short-timeout client
built from the configuration, the queues to look at, the server's clock, and output helpers.

The commands print their output and return an exit code; `CommandFailed` and `UsageError` carry
the one line that `jobd.cli.entry` prints for exit codes 1 and 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import redis
import redis.retry

from jobd.client.operations import RESULT_BLOCK_SECONDS, check_queue
from jobd.client.sync_client import SyncClient
from jobd.config.settings import Settings
from jobd.redis.connect import connection_options, open_sync, retry_backoff
from jobd.redis.embedded import client_url
from jobd.redis.keys import RegistryKeys
from jobd.redis.registry import WorkerEntry, worker_entry
from jobd.redis.replies import text

CLI_TIMEOUT = 5.0
"""Socket and connect timeout of the operator commands, seconds (at most; the file may say less)."""
CLI_RETRIES = 1
"""redis-py retries of a command that met a connection error or a timeout."""


class CommandFailed(Exception):
    """An operator command could not do its work (exit code 1); the message is one line."""


class UsageError(Exception):
    """A command line that cannot work as written (exit code 2); the message is one line."""


@contextmanager
def connect(
    settings: Settings, *, default_queue: str | None = None, blocking: bool = False
) -> Iterator[SyncClient]:
    """A producer client for the configured Redis with short timeouts and a single retry, so
    that an unreachable Redis is reported within seconds; closed on exit.

    `blocking` clients wait for results, so their socket timeout stays above the longest single
    blocking wait (RESULT_BLOCK_SECONDS). With `redis.url = "embedded"` it connects to the server
    the running worker started, found through the data dir (RedisUnavailable if none runs)."""
    worker = settings.worker
    url = client_url(settings)
    socket_timeout = RESULT_BLOCK_SECONDS + CLI_TIMEOUT if blocking else CLI_TIMEOUT
    options = connection_options(
        min(settings.redis.socket_timeout, socket_timeout),
        min(settings.redis.connect_timeout, CLI_TIMEOUT),
    )
    options["retry"] = redis.retry.Retry(retry_backoff(), CLI_RETRIES)
    connection = open_sync(url, **options)
    try:
        yield SyncClient(
            url,
            key_prefix=settings.redis.key_prefix,
            default_queue=default_queue or (worker.queues[0] if worker.queues else "default"),
            max_payload_bytes=worker.max_payload_bytes,
            redis_client=connection,
            signing_key=worker.signing_key or None,
            encryption_keys=worker.encryption_keys or None,
        )
    finally:
        connection.close()


def server_ms(connection: redis.Redis) -> int:
    """Milliseconds since the epoch on the Redis server's clock (the clock jobd's scripts use)."""
    seconds, microseconds = connection.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


# -- output -----------------------------------------------------------------------------------


def format_moment(value: datetime | None) -> str:
    """UTC wall time for tables: 2025-01-02 03:04:05Z."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=json_default))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns two spaces apart; columns of numbers (None shown as "-") right-aligned."""
    values = [list(row) for row in rows]
    right = [
        bool(values) and all(isinstance(row[index], int | None) for row in values)
        for index in range(len(headers))
    ]
    cells = [["-" if cell is None else str(cell) for cell in row] for row in values]
    widths = [
        max([len(header), *(len(row[index]) for row in cells)])
        for index, header in enumerate(headers)
    ]
    lines = []
    for row in [list(headers), *cells]:
        parts = [
            cell.rjust(width) if align_right else cell.ljust(width)
            for cell, width, align_right in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


# -- queues and workers -----------------------------------------------------------------------


def live_workers(connection: redis.Redis, prefix: str, now_ms: int) -> list[WorkerEntry]:
    """Workers whose registry entry is live now (score >= now), by id; entries without a hash
    (expired between the two reads) are left out."""
    keys = RegistryKeys(prefix)
    members: list[tuple[bytes, float]] = cast(
        list[tuple[bytes, float]],
        connection.zrange(keys.index, now_ms, "+inf", byscore=True, withscores=True),
    )
    pipe = connection.pipeline(transaction=False)
    for member, _ in members:
        pipe.hgetall(keys.worker(text(member)))
    entries = [
        worker_entry(member, fields, int(score))
        for (member, score), fields in zip(members, pipe.execute(), strict=True)
        if fields
    ]
    return sorted(entries, key=lambda entry: entry.id)


def configured_queues(settings: Settings) -> list[str]:
    """worker.queues, then the queues of [functions] entries, in file order, once each."""
    names = [*settings.worker.queues, *(f.queue for f in settings.functions.values())]
    return list(dict.fromkeys(names))


def queues_to_report(
    settings: Settings, workers: Iterable[WorkerEntry], restrict: Sequence[str] | None
) -> list[str]:
    """The queues given with --queue, else the configured ones and those live workers consume."""
    if restrict:
        return list(dict.fromkeys(check_queue(name) for name in restrict))
    from_workers = sorted({name for worker in workers for name in worker.queues})
    return list(dict.fromkeys([*configured_queues(settings), *from_workers]))


def queues_for(client: SyncClient, settings: Settings, restrict: Sequence[str] | None) -> list[str]:
    """`queues_to_report`, reading the registry only when --queue was not given."""
    if restrict:
        return queues_to_report(settings, (), restrict)
    workers = live_workers(client.redis, client.key_prefix, server_ms(client.redis))
    return queues_to_report(settings, workers, None)
