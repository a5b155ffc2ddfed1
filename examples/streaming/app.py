"""A web app that streams a job's output to the browser: `POST /chat` enqueues a chat job
(examples/streaming/jobs.py), `GET /chat/{job_id}/events` relays its events as Server-Sent Events
(`job.sse()`), and `GET /` is a page that shows the reply as it is written.

    jobd --config examples/streaming/jobs.toml      # the worker first: it starts the Redis
    uvicorn examples.streaming.app:app               # then the app; open http://127.0.0.1:8000

The app reads the worker's jobs.toml (JOBD_CONFIG, default: the one beside this file) to find
Redis. A browser's EventSource that loses its connection reconnects by itself with the header
Last-Event-ID, and the stream resumes after that event: no token is lost or shown twice.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from jobd.client import Client, InvalidJobOption, JobStatus

HERE = Path(__file__).resolve().parent
PAGE = (HERE / "index.html").read_text(encoding="utf-8")


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000)


class ChatStarted(BaseModel):
    job_id: str


def jobs(request: Request) -> Client:
    """The app's jobd client (opened by the lifespan)."""
    client: Client = request.app.state.jobs
    return client


Jobs = Annotated[Client, Depends(jobs)]


def create_app(config: str | os.PathLike[str] | None = None) -> FastAPI:
    """The app, for the worker whose jobs.toml is at `config` (default: $JOBD_CONFIG, else the
    example's own jobs.toml), read when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        path = config or os.environ.get("JOBD_CONFIG") or HERE / "jobs.toml"
        async with Client.from_config(path) as client:
            app.state.jobs = client
            yield

    app = FastAPI(title="jobd streaming example", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/chat", status_code=202)
    async def start_chat(body: ChatRequest, jobs: Jobs) -> ChatStarted:
        job = await jobs.enqueue("chat", body.prompt)
        return ChatStarted(job_id=job.id)

    @app.get("/chat/{job_id}/events")
    async def chat_events(
        job_id: str,
        jobs: Jobs,
        last_event_id: str | None = None,
        last_event_id_header: Annotated[str | None, Header(alias="last-event-id")] = None,
    ) -> StreamingResponse:
        """The job's events from the start, or after the event the header Last-Event-ID (sent
        by a reconnecting EventSource) or else the query parameter `last_event_id` names."""
        try:
            job = jobs.job(job_id)
            body = job.sse(last_event_id_header or last_event_id)
        except InvalidJobOption as error:
            raise HTTPException(400, str(error)) from None
        if await job.status() == JobStatus.NOT_FOUND:
            raise HTTPException(404, f"no job {job_id}")
        # no-cache: browsers and proxies must not store the stream; X-Accel-Buffering: nginx
        # passes each event on at once instead of buffering the response
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    return app


app = create_app()
