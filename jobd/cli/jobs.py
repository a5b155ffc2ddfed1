"""`jobd enqueue`, `jobd job show`, `jobd job follow` and `jobd job abort`: one job at a time,
through the producer client (`jobd.client.sync_client`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from jobd.cli.shared import (
    CommandFailed,
    UsageError,
    connect,
    format_moment,
    print_json,
    queues_for,
    server_ms,
)
from jobd.client.sync_client import SyncClient, SyncJob
from jobd.config.durations import format_age, parse_duration
from jobd.config.settings import Settings
from jobd.errors import DecryptError, InvalidJobOption, JobAborted, JobFailed, JobNotFound
from jobd.events import JobEvent, Progress
from jobd.model import JobInfo, JobStatus, check_job_id
from jobd.redis.keys import QueueKeys
from jobd.redis.replies import text

ABORT_WAIT = 5.0
"""How long `job abort` waits for a running job's worker to confirm the cancellation, seconds."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(value: str, what: str) -> Any:
    try:
        return json.loads(value, parse_constant=_reject_constant)
    except ValueError as error:
        raise UsageError(f"{what} is not valid JSON ({error}): {value!r}") from None


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def call_arguments(
    args_text: str | None, kwargs_text: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """Positional arguments from a JSON array, keyword arguments from a JSON object."""
    args: Any = [] if args_text is None else parse_json(args_text, "ARGS")
    if not isinstance(args, list):
        hint = " (keyword arguments go in --kwargs)" if isinstance(args, dict) else ""
        raise UsageError(
            f"ARGS must be a JSON array of positional arguments, like '[1, \"a\"]' or '[42]'; "
            f"got {json_kind(args)}{hint}"
        )
    kwargs: Any = {} if kwargs_text is None else parse_json(kwargs_text, "--kwargs")
    if not isinstance(kwargs, dict):
        raise UsageError(
            f'--kwargs must be a JSON object, like \'{{"subject": "Hi"}}\'; got {json_kind(kwargs)}'
        )
    return args, kwargs


def seconds(text: str, option: str) -> float:
    """A duration option ("30s", "5m", a number of seconds) in seconds."""
    try:
        return parse_duration(text)
    except ValueError as error:
        hint = (
            " (put ARGS before --wait)"
            if option == "--wait" and text.startswith(("[", "{"))
            else ""
        )
        raise UsageError(f"{option}: {error}{hint}") from None


def enqueue(
    settings: Settings,
    function: str,
    args_text: str | None,
    *,
    kwargs_text: str | None,
    queue: str | None,
    delay: str | None,
    job_id: str | None,
    priority: int,
    max_tries: int | None,
    wait: float | None,
    group: str | None = None,
    cost: int | None = None,
    after: Sequence[str] | None = None,
    after_failure: str = "fail",
) -> int:
    """`jobd enqueue`: store one job, print its id; with `wait`, print its result as JSON."""
    args, kwargs = call_arguments(args_text, kwargs_text)
    configured = settings.function_for(function)
    default_queue = configured.queue if configured is not None else None
    delay_seconds = None if delay is None else seconds(delay, "--delay")
    with connect(settings, default_queue=default_queue, blocking=wait is not None) as client:
        operation = client.enqueue_operation(
            [(function, args, kwargs)], [job_id], queue=queue, delay=delay_seconds, at=None,
            priority=priority, max_tries=max_tries, timeout=None, expires=None, strict=False,
            group=group, cost=cost, after=after, after_failure=after_failure,
        )  # fmt: skip
        (ref,) = client.run(operation)
        handle = SyncJob(client, ref)
        print(handle.id, flush=True)
        if not handle.created:
            print(
                f"job {handle.id} already exists in queue {handle.queue!r} "
                f"({handle.status()}); nothing was enqueued",
                file=sys.stderr,
            )
        if wait is None:
            return 0
        try:
            value = handle.result(timeout=wait if wait > 0 else None)
        except JobFailed as error:
            raise CommandFailed(
                f"job {handle.id} failed: {error.error_type}: {error.message}"
            ) from None
        except JobAborted:
            raise CommandFailed(f"job {handle.id} was aborted") from None
        except DecryptError as error:
            raise CommandFailed(
                f"job {handle.id} succeeded; its result is {error.shown}: {error}"
            ) from None
        except JobNotFound:
            raise CommandFailed(f"job {handle.id} is gone (expired or purged)") from None
        except TimeoutError:
            raise CommandFailed(
                f"job {handle.id} did not finish within {wait:g}s; it is {handle.status()}"
            ) from None
        print(json.dumps(value, ensure_ascii=False))
    return 0


def find_job(
    client: SyncClient, settings: Settings, job_id: str, restrict: Sequence[str] | None
) -> str:
    """The queue holding job `job_id`, searched in the queues the commands report."""
    check_job_id(job_id)
    queues = queues_for(client, settings, restrict)
    pipe = client.redis.pipeline(transaction=False)
    for queue in queues:
        pipe.exists(QueueKeys(client.key_prefix, queue).job(job_id))
    for queue, found in zip(queues, pipe.execute(), strict=True):
        if found:
            return queue
    raise CommandFailed(
        f"job {job_id} not found in queue{'s' if len(queues) != 1 else ''} {', '.join(queues)}"
    )


def show(settings: Settings, job_id: str, *, restrict: Sequence[str] | None, as_json: bool) -> int:
    """`jobd job show`: everything stored about one job, with its parents and dependants."""
    with connect(settings) as client:
        queue = find_job(client, settings, job_id, restrict)
        info = client.job(job_id, queue=queue).info()
        now_ms = server_ms(client.redis)
        links = graph_links(client, info) if info is not None else Links((), ())
    if info is None:
        raise CommandFailed(
            f"job {job_id} not found in queue {queue} (it ended and expired just now)"
        )
    if as_json:
        print_json(
            {
                **dataclasses.asdict(info),
                "parents": [_linked(row) for row in links.parents],
                "dependants": [_linked(row) for row in links.dependants],
            }
        )
        return 0
    print(describe(info, settings, now_ms, links))
    return 0


SHOWN_DEPENDANTS = 20
"""Dependants `job show` lists (with the count of the others)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Links:
    """A job's parents and its dependants that have not ended, as (queue, id, status)."""

    parents: Sequence[tuple[str, str, str]]
    dependants: Sequence[tuple[str, str, str]]
    more_dependants: int = 0


def _linked(row: tuple[str, str, str]) -> dict[str, str]:
    return {"queue": row[0], "id": row[1], "status": row[2]}


def graph_links(client: SyncClient, info: JobInfo) -> Links:
    """The statuses of a job's parents, and of up to SHOWN_DEPENDANTS of its dependants."""
    members = client.redis.sscan(
        QueueKeys(client.key_prefix, info.queue).dependants(info.id), 0, count=SHOWN_DEPENDANTS
    )[1]
    total = client.redis.scard(QueueKeys(client.key_prefix, info.queue).dependants(info.id))
    dependants = [tuple(text(m).partition(" ")[::2]) for m in members[:SHOWN_DEPENDANTS]]
    rows = [*info.parents, *dependants]
    pipe = client.redis.pipeline(transaction=False)
    for queue, job_id in rows:
        pipe.hget(QueueKeys(client.key_prefix, queue).job(job_id), "status")
    statuses = [text(s) if s else "not_found" for s in pipe.execute()] if rows else []
    linked = [(q, j, s) for (q, j), s in zip(rows, statuses, strict=True)]
    parents = linked[: len(info.parents)]
    return Links(parents, linked[len(info.parents) :], max(0, total - len(dependants)))


def describe(info: JobInfo, settings: Settings, now_ms: int, links: Links | None = None) -> str:
    """A job as `label  value` lines, with its error's traceback indented below."""
    configured = settings.function_for(info.function)
    max_tries = info.max_tries or (configured or settings.defaults).max_tries

    def when(value: Any) -> str:
        if value is None:
            return "-"
        age = now_ms / 1000 - value.timestamp()
        relative = f"in {format_age(-age)}" if age < 0 else f"{format_age(age)} ago"
        return f"{format_moment(value)} ({relative})"

    lines = [
        ("id", info.id),
        ("status", str(info.status)),
        ("function", info.function),
        ("queue", info.queue),
        ("priority", str(info.priority)),
        *([("group", info.group)] if info.group else []),
        *([("cost", str(info.cost))] if info.cost != 1 else []),
        *([("held by", f"limit {info.held_by}: waits for it, uncharged")] if info.held_by else []),
        *([("progress", progress_text(info.progress))] if info.progress else []),
        ("tries", f"{info.tries} of {max_tries}"),
        ("lost", f"{info.lost} (tries whose worker died)"),
        *([("encrypted", f"with key {info.encryption_key_id}")] if info.encryption_key_id else []),
        ("args", json.dumps(list(info.args), ensure_ascii=False)),
        ("kwargs", json.dumps(info.kwargs, ensure_ascii=False)),
        ("enqueued", when(info.enqueued_at)),
        ("due", when(info.due_at)),
        ("started", when(info.started_at)),
        ("finished", when(info.finished_at)),
        ("expires", when(info.expires_at)),
    ]
    if links is not None:
        lines += [("after", f"{j} ({q}): {s}") for q, j, s in links.parents]
        if info.after_failure:
            lines.append(("after_failure", info.after_failure))
        lines += [("dependant", f"{j} ({q}): {s}") for q, j, s in links.dependants]
        if links.more_dependants:
            lines.append(("dependant", f"… and {links.more_dependants} more"))
    if info.status == JobStatus.SUCCEEDED:
        lines.append(("result", json.dumps(info.result, ensure_ascii=False)))
    if info.error is not None:
        label = "error" if info.status == JobStatus.FAILED else "last error"
        lines.append((label, f"{info.error.type}: {info.error.message}"))
    width = max(len(label) for label, _ in lines)
    out = [f"{label.ljust(width)}  {value}" for label, value in lines]
    if info.error is not None and info.error.traceback:
        out.append("traceback:")
        out.extend("  " + line for line in info.error.traceback.rstrip().splitlines())
    return "\n".join(out)


def follow(
    settings: Settings,
    job_id: str,
    *,
    restrict: Sequence[str] | None,
    after: str | None,
    as_json: bool,
) -> int:
    """`jobd job follow`: print the job's events until its end; exit 0 if it succeeded."""
    last: JobEvent | None = None
    with connect(settings, blocking=True) as client:
        queue = find_job(client, settings, job_id, restrict)
        try:
            for event in client.job(job_id, queue=queue).events(after=after):
                print(event_line(event, as_json), flush=True)
                last = event
        except InvalidJobOption as error:
            raise UsageError(f"--after: {error}") from None
        except JobNotFound as error:
            raise CommandFailed(str(error)) from None
        if last is None:  # resumed after the end event: the job's status tells its outcome
            status = client.job(job_id, queue=queue).status()
            succeeded = status == JobStatus.SUCCEEDED
            what = str(status)
        else:
            succeeded = last.event == "succeeded"
            what = last.event
    if not succeeded:
        raise CommandFailed(f"job {job_id} {what}")
    return 0


def event_line(event: JobEvent, as_json: bool) -> str:
    """One event as `jobd job follow` prints it: time, name and JSON data, or one JSON object."""
    if as_json:
        document = {**dataclasses.asdict(event), "time": event.time.isoformat()}
        return json.dumps(document, ensure_ascii=False)
    data = "" if event.data is None else "  " + json.dumps(event.data, ensure_ascii=False)
    return f"{event.id}  {event.time.strftime('%H:%M:%S.%f')[:-3]}  {event.event}{data}"


def progress_text(progress: Progress) -> str:
    message = f": {progress.message}" if progress.message else ""
    return f"{progress.fraction:.0%}{message}"


def abort(settings: Settings, job_id: str, *, restrict: Sequence[str] | None) -> int:
    """`jobd job abort`: a waiting job will not run; a running one is cancelled by its worker."""
    with connect(settings) as client:
        queue = find_job(client, settings, job_id, restrict)
        job = client.job(job_id, queue=queue)
        if job.abort(timeout=ABORT_WAIT):
            print(f"job {job_id} aborted")
            return 0
        state = job.status()
    if state == JobStatus.NOT_FOUND:
        raise CommandFailed(
            f"job {job_id} not found in queue {queue} (it ended and expired just now)"
        )
    if state.is_terminal:
        print(f"job {job_id} already ended ({state}); nothing to abort")
        return 0
    raise CommandFailed(
        f"job {job_id}: abort requested, but it is still {state} after {ABORT_WAIT:g}s; "
        "its worker cancels it as soon as it can"
    )
