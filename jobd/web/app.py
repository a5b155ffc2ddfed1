"""`create_app`: the dashboard as an ASGI (Starlette) app, for `jobd web` or for mounting:

    app.mount("/jobd", jobd.web.create_app(client))          # FastAPI or Starlette

Every link, asset, form and redirect is built from the request (`url_for`, the mount's root path),
so the app works under any prefix. Protect a mounted dashboard as the rest of the host app is
protected (its authentication middleware sees the requests first); `jobd web` adds basic auth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobd.client import Client
from jobd.client.operations import check_queue
from jobd.config.settings import Settings, redact_url
from jobd.errors import JobdError, RedisUnavailable
from jobd.web import actions, pages
from jobd.web.render import HERE, page
from jobd.web.security import Guard

logger = logging.getLogger("jobd.web")

DEFAULT_TITLE = "jobd"


def create_app(
    client: Client,
    *,
    read_only: bool = False,
    settings: Settings | None = None,
    title: str = DEFAULT_TITLE,
    queues: Sequence[str] = (),
    credentials: tuple[str, str] | None = None,
    refresh_seconds: float = 5.0,
) -> Starlette:
    """The dashboard on `client`'s Redis and key prefix.

    `settings` (a loaded jobs.toml) adds the configured queues, functions, limits and cron
    entries; without it the dashboard shows the queues live workers consume (and `queues`),
    and the limits they publish. `read_only=True` offers no actions and refuses their POSTs
    (403). `credentials=(user, password)` asks for HTTP basic auth on every request. Pages
    refresh their figures every `refresh_seconds` (0: never) while open in a browser.
    The client stays the caller's: the app never closes it."""
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/queues/{queue}", pages.queue, name="queue"),
        Route("/queues/{queue}/job", pages.job, name="job"),
        Route("/queues/{queue}/job/events", pages.job_events, name="job_events"),
        Route("/dead", pages.dead, name="dead"),
        Route("/scheduled", pages.scheduled, name="scheduled"),
        Route("/cron", pages.cron, name="cron"),
        Route("/workers", pages.workers, name="workers"),
        Route("/limits", pages.limits, name="limits"),
        Route("/actions/dead", actions.dead_action, methods=["POST"], name="dead_action"),
        Route("/actions/abort", actions.abort_action, methods=["POST"], name="abort_action"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, credentials=credentials)],
        exception_handlers={
            redis.RedisError: _redis_trouble,
            RedisUnavailable: _redis_trouble,
            JobdError: _redis_trouble,
        },
    )
    app.state.client = client
    app.state.settings = settings
    app.state.read_only = read_only
    app.state.title = title
    app.state.refresh_ms = max(round(refresh_seconds * 1000), 0)
    app.state.queues = tuple(check_queue(name) for name in queues)
    app.state.key_prefix = client.key_prefix
    app.state.redis_url = (
        redact_url(settings.redis.url)
        if settings is not None and not settings.redis.embedded
        else client.url_text
    )
    return app


async def _redis_trouble(request: Request, error: Exception) -> Response:
    """A page saying Redis cannot answer (503) instead of a traceback; never the password."""
    logger.warning("%s: %s: %s", request.url.path, type(error).__name__, error)
    url = request.app.state.redis_url
    message = f"Redis at {url} did not answer: {type(error).__name__}: {error}"
    if isinstance(error, JobdError) and not isinstance(error, RedisUnavailable):
        message = f"{type(error).__name__}: {error}"
    return page(request, "error.html", {"heading": "Redis trouble", "message": message}, 503)
