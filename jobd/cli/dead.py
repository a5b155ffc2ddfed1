"""`jobd dead list | retry | purge`: the dead letters, failed jobs kept with their error in each queue's
`dead` set (newest first), and the two ways out of it (dead_retry.lua, dead_purge.lua).

Retry and purge run in batches of `BATCH` ids per script call; `--all` takes the jobs that were dead
when the command started (by their dead-letter time on the Redis clock), so a stream of new failures
cannot keep it going forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import redis

from jobd import crypto
from jobd.cli.shared import (
    CommandFailed,
    connect,
    format_moment,
    print_json,
    queues_for,
    server_ms,
    table,
)
from jobd.config.settings import Settings
from jobd.model import check_job_id, decode_error
from jobd.redis.keys import QueueKeys
from jobd.redis.replies import moment, number, text
from jobd.redis.scripts import run_sync

BATCH = 500
"""Job ids per dead_retry / dead_purge call: bounds how long one script blocks Redis."""
ERROR_WIDTH = 70
"""Characters of the error shown per line of `dead list` (--json has it whole)."""

Action = Literal["retry", "purge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadJob:
    """One dead letter, as `dead list` shows it."""

    id: str
    queue: str
    function: str
    failed_at: datetime | None
    tries: int | None
    lost: int | None
    error_type: str
    error_message: str


def _dead_jobs(
    connection: redis.Redis,
    prefix: str,
    queues: Sequence[str],
    limit: int,
    keys: crypto.Keys | None = None,
) -> tuple[list[DeadJob], int]:
    """The newest `limit` dead letters over `queues`, and how many there are in all; encrypted
    error messages decrypted with `keys` (shown as "encrypted (no key …)" without them)."""
    pipe = connection.pipeline(transaction=False)
    for queue in queues:
        dead = QueueKeys(prefix, queue).dead
        pipe.zcard(dead)
        pipe.zrange(dead, 0, limit - 1, desc=True, withscores=True)
    replies = pipe.execute()
    total = sum(int(count) for count in replies[0::2])
    found: list[tuple[str, str, float]] = [
        (queue, text(member), float(score))
        for queue, members in zip(queues, replies[1::2], strict=True)
        for member, score in members
    ]
    found.sort(key=lambda entry: entry[2], reverse=True)
    found = found[:limit]
    pipe = connection.pipeline(transaction=False)
    for queue, job_id, _ in found:
        pipe.hmget(QueueKeys(prefix, queue).job(job_id), ["function", "tries", "lost", "error"])
    jobs = []
    for (queue, job_id, score), fields in zip(found, pipe.execute() if found else [], strict=True):
        function, tries, lost, error_data = fields
        seal = crypto.JobSeal(keys, job_id, queue, text(function))
        error = decode_error(error_data, seal)
        jobs.append(
            DeadJob(
                id=job_id,
                queue=queue,
                function=text(function) or "?",
                failed_at=moment(int(score)),
                tries=number(tries),
                lost=number(lost),
                error_type=error.type if error else "",
                error_message=error.message if error else "",
            )
        )
    return jobs, total


def list_dead(
    settings: Settings, *, restrict: Sequence[str] | None, limit: int, as_json: bool
) -> int:
    """`jobd dead list`: the newest dead letters first."""
    with connect(settings) as client:
        queues = queues_for(client, settings, restrict)
        jobs, total = _dead_jobs(
            client.redis, client.key_prefix, queues, limit, client.encryption_keys
        )
    if as_json:
        print_json(
            {
                "total": total,
                "jobs": [
                    {
                        "id": job.id,
                        "queue": job.queue,
                        "function": job.function,
                        "failed_at": job.failed_at,
                        "tries": job.tries,
                        "lost": job.lost,
                        "error": {"type": job.error_type, "message": job.error_message},
                    }
                    for job in jobs
                ],
            }
        )
        return 0
    if not jobs:
        print(f"no dead jobs in {_queue_names(queues)}")
        return 0
    rows = [
        [
            format_moment(job.failed_at), job.queue, job.id, job.function, job.tries,
            _one_line(f"{job.error_type}: {job.error_message}" if job.error_type else "-"),
        ]
        for job in jobs
    ]  # fmt: skip
    print(table(["FAILED AT", "QUEUE", "JOB", "FUNCTION", "TRIES", "ERROR"], rows))
    if total > len(jobs):
        print(f"(the newest {len(jobs)} of {total} dead jobs; --limit N shows more)")
    return 0


def _one_line(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 3] + "..."


def _queue_names(queues: Sequence[str]) -> str:
    return ("queue " if len(queues) == 1 else "queues ") + ", ".join(queues)


def _apply(
    connection: redis.Redis, prefix: str, action: Action, queue: str, ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Run dead_retry / dead_purge on `ids` of one queue, in batches: (done ids, skipped ids)."""
    keys = QueueKeys(prefix, queue)
    if action == "retry":
        name, script_keys = "dead_retry", [
            keys.dead, keys.queued, keys.wake, keys.job_prefix, keys.done_prefix,
        ]  # fmt: skip
    else:
        name, script_keys = "dead_purge", [keys.dead, keys.job_prefix, keys.done_prefix]
    done: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(ids), BATCH):
        reply = cast(
            list[list[Any]], run_sync(connection, name, script_keys, ids[start : start + BATCH])
        )
        done += [text(job_id) for job_id in reply[0]]
        skipped += [text(job_id) for job_id in reply[1]]
    return done, skipped


def _apply_all(
    connection: redis.Redis, prefix: str, action: Action, queue: str, cutoff_ms: int
) -> int:
    """Retry or purge every job dead-lettered up to `cutoff_ms`; how many were."""
    dead = QueueKeys(prefix, queue).dead
    count = 0
    while True:
        # Every id a call gets leaves the dead set (done or skipped), so this loop ends.
        members = connection.zrange(dead, "-inf", cutoff_ms, byscore=True, offset=0, num=BATCH)
        ids = [text(member) for member in cast(list[bytes], members)]
        if not ids:
            return count
        done, _ = _apply(connection, prefix, action, queue, ids)
        count += len(done)


def change_dead(
    settings: Settings,
    action: Action,
    job_ids: Sequence[str],
    *,
    every: bool,
    restrict: Sequence[str] | None,
) -> int:
    """`jobd dead retry` / `jobd dead purge`: the given dead jobs, or all of them."""
    past = "retried" if action == "retry" else "purged"
    with connect(settings) as client:
        connection, prefix = client.redis, client.key_prefix
        queues = queues_for(client, settings, restrict)
        if every:
            cutoff = server_ms(connection)
            counts = {
                queue: _apply_all(connection, prefix, action, queue, cutoff) for queue in queues
            }
            for queue, count in counts.items():
                if count:
                    print(f"{past} {count} dead job{'s' if count != 1 else ''} of queue {queue}")
            if not any(counts.values()):
                print(f"no dead jobs in {_queue_names(queues)}")
            return 0
        ids = list(dict.fromkeys(check_job_id(job_id) for job_id in job_ids))
        pipe = connection.pipeline(transaction=False)
        for queue in queues:
            for job_id in ids:
                pipe.zscore(QueueKeys(prefix, queue).dead, job_id)
        scores = iter(pipe.execute())
        located: dict[str, list[str]] = {}
        for queue in queues:
            for job_id in ids:
                if next(scores) is not None:
                    located.setdefault(queue, []).append(job_id)
        handled: set[str] = set()
        for queue, queue_ids in located.items():
            done, _ = _apply(connection, prefix, action, queue, queue_ids)
            for job_id in done:
                print(f"{past} {job_id} (queue {queue})")
            handled.update(done)
    missing = [job_id for job_id in ids if job_id not in handled]
    if missing:
        raise CommandFailed(
            f"not in the dead letters of {_queue_names(queues)}: {', '.join(missing)}"
        )
    return 0
