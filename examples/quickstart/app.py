import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from jobd.client import Client


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    config = os.environ.get("JOBD_CONFIG", "examples/quickstart/jobs.toml")
    async with Client.from_config(config) as jobs:
        app.state.jobs = jobs  # one client for the app's lifetime, shared by every request
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/summaries")
async def start(url: str) -> dict[str, str]:
    job = await app.state.jobs.enqueue("summarise", url)  # returns once the job is stored
    return {"job_id": job.id}


@app.get("/summaries/{job_id}/events")
async def events(job_id: str) -> StreamingResponse:
    stream = app.state.jobs.job(job_id).sse()  # Server-Sent Events, until the job ends
    return StreamingResponse(stream, media_type="text/event-stream")
