"""The dashboard's pages (GET): each reads what it shows from Redis (jobd.web.data, jobd.web.jobs)
and renders a template. Nothing is kept between requests, so replicas and restarts show the same.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jobd.client import Client
from jobd.client.operations import check_queue
from jobd.config.settings import Settings
from jobd.errors import InvalidJobOption, JobNotFound
from jobd.model import JobStatus, check_job_id
from jobd.redis.registry import WorkerEntry
from jobd.web import data, jobs
from jobd.web.render import page

SCHEDULED_SHOWN = 20
"""Jobs per queue on the scheduled page (the queue's page has them all)."""
FAILURES_SHOWN = 15


class Context:
    """What a page handler needs of the app: the client, the settings, the queues to show."""

    def __init__(self, request: Request) -> None:
        state = request.app.state
        self.request = request
        self.client: Client = state.client
        self.settings: Settings | None = state.settings
        self.extra_queues: tuple[str, ...] = state.queues
        self.redis = self.client.redis
        self.prefix = self.client.key_prefix

    async def now_ms(self) -> int:
        return await data.server_ms(self.redis)

    async def workers_and_queues(self, now_ms: int) -> tuple[list[WorkerEntry], list[str]]:
        workers = await data.live_workers(self.redis, self.prefix, now_ms)
        queues = data.known_queues(
            self.settings, self.extra_queues, workers, self.client.default_queue
        )
        return workers, queues


def _int(request: Request, name: str, default: int = 0) -> int:
    try:
        return min(max(int(request.query_params.get(name, default)), 0), 10**9)
    except ValueError:
        return default


def _queue(request: Request) -> str | None:
    try:
        return check_queue(request.path_params.get("queue") or request.query_params["queue"])
    except (InvalidJobOption, KeyError):
        return None


def not_found(request: Request, message: str) -> Response:
    return page(request, "error.html", {"heading": "Not found", "message": message}, 404)


def _now(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _decoding(context: Any) -> jobs.Decoding:
    """How the pages decode stored values: the client's serializer and encryption keys."""
    return jobs.Decoding(context.client.serializer, context.client.encryption_keys)


async def overview(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    workers, queues = await context.workers_and_queues(now_ms)
    counts, stats = await asyncio.gather(
        data.queue_counts(context.redis, context.prefix, queues, now_ms),
        data.throughput(context.redis, context.prefix, queues, now_ms),
    )
    failures = sorted(stats.failures.items(), key=lambda item: (-item[1], item[0]))
    return page(
        request,
        "overview.html",
        {
            "now": _now(now_ms),
            "counts": counts,
            "totals": {
                state: sum(getattr(row, state) for row in counts)
                for state in ("queued", "scheduled", "waiting", "running", "dead")
            },
            "combined": stats.combined(),
            "per_queue": stats.minutes,
            "workers": workers,
            "failures": failures[:FAILURES_SHOWN],
            "more_failures": max(len(failures) - FAILURES_SHOWN, 0),
        },
    )


async def queue(request: Request) -> Response:
    context = Context(request)
    name = _queue(request)
    if name is None:
        return not_found(
            request, "There is no such queue: queue names are letters, digits and _ . : -"
        )
    state = request.query_params.get("state", "queued")
    if state not in jobs.STATES:
        state = "queued"
    function = request.query_params.get("function", "").strip() or None
    group = request.query_params.get("group", "").strip() or None
    if group is not None:
        try:
            check_job_id(group, "group")
        except InvalidJobOption:
            group = None
    now_ms = await context.now_ms()
    (counts,), stats, listing = await asyncio.gather(
        data.queue_counts(context.redis, context.prefix, [name], now_ms),
        data.throughput(context.redis, context.prefix, [name], now_ms),
        jobs.job_page(
            context.redis, context.prefix, _decoding(context), name, state,
            offset=_int(request, "offset"), order=request.query_params.get("order", "newest"),
            function=function, group=group,
        ),
    )  # fmt: skip
    functions = sorted(
        f.name for f in (context.settings.functions.values() if context.settings else ())
        if f.queue == name
    )  # fmt: skip
    return page(
        request,
        "queue.html",
        {
            "now": _now(now_ms), "queue": name, "counts": counts, "listing": listing,
            "minutes": stats.minutes[name], "functions": functions, "states": jobs.STATES,
            "page_size": jobs.PAGE_SIZE, "window": jobs.FILTER_WINDOW,
        },
    )  # fmt: skip


async def job(request: Request) -> Response:
    context = Context(request)
    name = _queue(request)
    job_id = request.query_params.get("id", "")
    try:
        check_job_id(job_id)
    except InvalidJobOption:
        return not_found(request, "That is not a job id.")
    if name is None:
        return not_found(request, "There is no such queue.")
    info = await context.client.job(job_id, queue=name).info()
    if info is None:
        return not_found(
            request,
            f"Job {job_id} is not in queue {name}: it never existed, or it ended and its result "
            "expired, or it was purged.",
        )
    links, events, dead_score, now_ms = await asyncio.gather(
        jobs.graph_links(context.redis, context.prefix, name, job_id, info.parents),
        jobs.event_count(context.redis, context.prefix, name, job_id),
        context.redis.zscore(jobs.state_key(context.prefix, name, "dead"), job_id),
        context.now_ms(),
    )
    configured = context.settings.function_for(info.function) if context.settings else None
    max_tries = info.max_tries or (
        (configured or context.settings.defaults).max_tries if context.settings else None
    )
    full = request.query_params.get("full", "")
    return page(
        request,
        "job.html",
        {
            "now": _now(now_ms), "queue": name, "job": info, "links": links, "events": events,
            "is_dead": dead_score is not None, "max_tries": max_tries, "full": full,
            "arguments": json.dumps([*info.args], ensure_ascii=False, indent=2)
            if info.args else "[]",
            "keywords": json.dumps(info.kwargs, ensure_ascii=False, indent=2),
            "abortable": not info.status.is_terminal,
            "follow": events > 0 or info.status in (JobStatus.RUNNING, JobStatus.QUEUED),
        },
    )  # fmt: skip


async def job_events(request: Request) -> Response:
    """The job's events for the page's EventSource: each message's data is
    `{"event": name, "data": ...}` (EventSource cannot listen to names it does not know), ids
    as job.sse() gives them, so a reconnect resumes after the last one."""
    context = Context(request)
    name = _queue(request)
    job_id = request.query_params.get("id", "")
    try:
        check_job_id(job_id)
    except InvalidJobOption:
        return Response("not a job id", status_code=400)
    if name is None:
        return Response("no such queue", status_code=404)
    handle = context.client.job(job_id, queue=name)
    if await handle.status() == JobStatus.NOT_FOUND:
        return Response("no such job", status_code=404)
    try:
        body = handle.sse(request.headers.get("last-event-id"))
    except InvalidJobOption as error:
        return Response(str(error), status_code=400)
    return StreamingResponse(
        _unnamed(body), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _unnamed(body: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    try:
        async for message in body:
            if message.startswith(b":"):
                yield message
                continue
            fields = dict(
                line.split(": ", 1)
                for line in message.decode().strip("\n").split("\n")
                if ": " in line
            )
            name = json.dumps(fields.get("event", "message"))
            yield (
                f"id: {fields.get('id', '')}\n"
                f'data: {{"event":{name},"data":{fields.get("data", "null")}}}\n\n'
            ).encode()
    except JobNotFound:
        return
    finally:
        await body.aclose()


async def dead(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    _, queues = await context.workers_and_queues(now_ms)
    chosen = _queue(request) if "queue" in request.query_params else None
    counts = await data.queue_counts(context.redis, context.prefix, queues, now_ms)
    rows, total, next_offset = await jobs.dead_letters(
        context.redis, context.prefix, _decoding(context),
        [chosen] if chosen else queues, _int(request, "offset"),
    )  # fmt: skip
    return page(
        request,
        "dead.html",
        {
            "now": _now(now_ms), "counts": counts, "chosen": chosen, "rows": rows,
            "total": total, "offset": _int(request, "offset"), "next_offset": next_offset,
            "page_size": jobs.PAGE_SIZE,
        },
    )  # fmt: skip


async def scheduled(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    _, queues = await context.workers_and_queues(now_ms)
    found = await jobs.next_scheduled(
        context.redis,
        context.prefix,
        _decoding(context),
        queues,
        SCHEDULED_SHOWN,
    )
    return page(request, "scheduled.html", {"now": _now(now_ms), "found": found})


async def cron(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    rows: list[dict[str, Any]] = []
    if context.settings is not None and context.settings.cron:
        from jobd.worker.cron import cron_overview  # croniter: only for configured entries

        rows = await cron_overview(context.redis, context.settings, _now(now_ms))
    return page(
        request,
        "cron.html",
        {"now": _now(now_ms), "rows": rows, "configured": context.settings is not None},
    )


async def workers(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    found, _ = await context.workers_and_queues(now_ms)
    running = await data.running_jobs(context.redis, context.prefix, found)
    return page(
        request, "workers.html", {"now": _now(now_ms), "workers": found, "running": running}
    )


async def limits(request: Request) -> Response:
    context = Context(request)
    now_ms = await context.now_ms()
    rows = await data.limit_rows(context.redis, context.prefix, context.settings, now_ms)
    return page(request, "limits.html", {"now": _now(now_ms), "rows": rows})
