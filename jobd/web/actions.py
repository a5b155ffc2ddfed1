"""The dashboard's actions: retry and purge dead letters (one, selected, every one of a queue) and
abort a job. Each is a POST with the session's CSRF token (jobd.web.security), is refused (403)
by a read-only dashboard, is logged (logger `jobd.web`) with who sent it, and answers with a
redirect to the page it came from, which then says what was done.

Retry and purge run the same scripts as `jobd dead retry | purge` (dead_retry.lua,
dead_purge.lua), in batches of BATCH ids; "all of a queue" takes the jobs that were dead when
the action started (by their dead-letter time on the Redis clock), as `--all` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, cast
from urllib.parse import parse_qs

import redis.asyncio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from jobd.client.operations import check_queue
from jobd.errors import InvalidJobOption
from jobd.model import check_job_id
from jobd.redis.keys import QueueKeys
from jobd.redis.replies import text
from jobd.redis.scripts import run_async
from jobd.web.data import server_ms
from jobd.web.render import link
from jobd.web.security import CSRF_FIELD, actor, csrf_problem, set_flash

logger = logging.getLogger("jobd.web")

BATCH = 500
"""Job ids per dead_retry / dead_purge call (as jobd dead retry | purge)."""
MAX_BODY = 1 << 20
"""Largest form accepted: a selection of a page's ids fits many times over."""
ABORT_WAIT = 2.0
"""Seconds an abort waits for a running job's worker to confirm the cancellation."""

Action = Literal["retry", "purge"]


async def apply(
    connection: redis.asyncio.Redis, prefix: str, action: Action, queue: str, ids: Sequence[str]
) -> tuple[list[str], list[str]]:
    """dead_retry / dead_purge on `ids` of one queue, in batches: (done ids, skipped ids)."""
    keys = QueueKeys(prefix, queue)
    if action == "retry":
        name = "dead_retry"
        script_keys = [keys.dead, keys.queued, keys.wake, keys.job_prefix, keys.done_prefix]
    else:
        name, script_keys = "dead_purge", [keys.dead, keys.job_prefix, keys.done_prefix]
    done: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(ids), BATCH):
        reply = cast(
            list[list[Any]],
            await run_async(connection, name, script_keys, list(ids[start : start + BATCH])),
        )
        done += [text(job_id) for job_id in reply[0]]
        skipped += [text(job_id) for job_id in reply[1]]
    return done, skipped


async def apply_all(
    connection: redis.asyncio.Redis, prefix: str, action: Action, queue: str
) -> int:
    """Retry or purge every job of `queue` that is dead now; how many were."""
    cutoff = await server_ms(connection)
    dead = QueueKeys(prefix, queue).dead
    count = 0
    while True:
        # Every id a call gets leaves the dead set (done or skipped), so this loop ends.
        members = await connection.zrange(dead, "-inf", cutoff, byscore=True, offset=0, num=BATCH)
        ids = [text(member) for member in cast(list[bytes], members)]
        if not ids:
            return count
        done, _ = await apply(connection, prefix, action, queue, ids)
        count += len(done)


async def _form(request: Request) -> dict[str, list[str]] | None:
    """The urlencoded form (python-multipart is not needed for it), or None when too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return parse_qs(body.decode(errors="replace"), keep_blank_values=True)


def _back(request: Request, form: dict[str, list[str]], fallback: str) -> str:
    """Where to go after the action: the page it came from, if it is one of the dashboard's."""
    root = str(request.scope.get("root_path") or "")
    target = (form.get("next") or [""])[0]
    if target.startswith(root + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


def _refused(message: str) -> Response:
    return PlainTextResponse(f"jobd dashboard: {message}", status_code=403)


async def _checked(request: Request) -> tuple[dict[str, list[str]], Response | None]:
    """The form, or the response that refuses the action (read-only, CSRF, too large)."""
    if request.app.state.read_only:
        return {}, _refused("this dashboard is read-only")
    form = await _form(request)
    if form is None:
        return {}, PlainTextResponse("jobd dashboard: form too large", status_code=413)
    problem = csrf_problem(request, (form.get(CSRF_FIELD) or [""])[0])
    if problem is not None:
        logger.warning("refused %s by %s: %s", request.url.path, actor(request), problem)
        return form, _refused(problem)
    return form, None


def _redirect(request: Request, target: str, kind: str, message: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    set_flash(request, response, kind, message)
    return response


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _selected(form: dict[str, list[str]]) -> dict[str, list[str]]:
    """The selected dead jobs ("<queue> <id>" values of `jobs`) by queue; InvalidJobOption for
    a value that is not one."""
    selected: dict[str, list[str]] = {}
    for value in form.get("jobs", []):
        queue, _, job_id = value.partition(" ")
        ids = selected.setdefault(check_queue(queue), [])
        if check_job_id(job_id) not in ids:
            ids.append(job_id)
    return selected


async def dead_action(request: Request) -> Response:
    """Retry or purge dead letters: the selected `jobs`, or `all` of `queue`."""
    form, refused = await _checked(request)
    if refused is not None:
        return refused
    action = (form.get("action") or [""])[0]
    every = (form.get("all") or [""])[0] == "1"
    try:
        queue = check_queue((form.get("queue") or [""])[0]) if every else None
        selected = _selected(form)
    except InvalidJobOption as error:
        return PlainTextResponse(f"jobd dashboard: {error}", status_code=400)
    if action not in ("retry", "purge"):
        return PlainTextResponse("jobd dashboard: action must be retry or purge", status_code=400)
    target = _back(request, form, link(request, "dead"))
    client = request.app.state.client
    verb = "retried" if action == "retry" else "purged"
    who = actor(request)
    if queue is not None:
        count = await apply_all(client.redis, client.key_prefix, cast(Action, action), queue)
        logger.info("dead %s of every job of queue %s by %s: %d jobs", action, queue, who, count)
        return _redirect(
            request,
            target,
            "ok",
            f"{verb.capitalize()} {_plural(count, 'dead job')} of queue {queue}.",
        )
    if not selected:
        return _redirect(request, target, "error", "Select the dead jobs first.")
    done: list[str] = []
    skipped: list[str] = []
    for name, ids in selected.items():
        queue_done, queue_skipped = await apply(
            client.redis, client.key_prefix, cast(Action, action), name, ids
        )
        logger.info(
            "dead %s in queue %s by %s: %s%s", action, name, who, " ".join(queue_done) or "-",
            f" (not dead letters any more: {' '.join(queue_skipped)})" if queue_skipped else "",
        )  # fmt: skip
        done += queue_done
        skipped += queue_skipped
    message = f"{verb.capitalize()} {_plural(len(done), 'dead job')}"
    message += f": {', '.join(done[:5])}{' …' if len(done) > 5 else ''}." if done else "."
    if skipped:
        message += f" Not dead letters any more: {', '.join(skipped[:5])}."
    if done and action == "purge" and "/job" in target:
        target = link(request, "dead")  # the job's page is gone with it
    return _redirect(request, target, "ok" if done else "error", message)


async def abort_action(request: Request) -> Response:
    """Abort one job: a waiting one will not run, a running one is cancelled by its worker."""
    form, refused = await _checked(request)
    if refused is not None:
        return refused
    try:
        queue = check_queue((form.get("queue") or [""])[0])
        job_id = check_job_id((form.get("id") or [""])[0])
    except InvalidJobOption as error:
        return PlainTextResponse(f"jobd dashboard: {error}", status_code=400)
    handle = request.app.state.client.job(job_id, queue=queue)
    aborted = await handle.abort(timeout=ABORT_WAIT)
    status = await handle.status()
    logger.info(
        "abort of job %s (queue %s) by %s: %s", job_id, queue, actor(request),
        "aborted" if aborted else f"not aborted, {status}",
    )  # fmt: skip
    if aborted:
        kind, message = "ok", f"Aborted job {job_id}."
    elif status.is_terminal:
        kind, message = "error", f"Job {job_id} had already ended ({status}); nothing to abort."
    else:
        kind = "error"
        message = f"Asked to abort job {job_id}; it is still {status}: its worker cancels it soon."
    target = _back(request, form, link(request, "job", {"id": job_id}, queue=queue))
    return _redirect(request, target, kind, message)
