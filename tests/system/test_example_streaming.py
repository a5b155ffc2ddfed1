"""The streaming example (examples/streaming) as a user runs it: the real daemon with the
example's jobs.toml (on the suite's Redis), the FastAPI app served by uvicorn in its own process,
and an SSE client that drops its connection mid-stream and resumes with Last-Event-ID, as a
browser's EventSource does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from examples.streaming.jobs import tokens
from jobd.client import SyncClient
from jobd.events import event_id
from tests.support.daemon import REPO_ROOT, Daemon
from tests.support.examples import on_suite_redis, uvicorn_app
from tests.system.conftest import MakeDaemon

EXAMPLE = REPO_ROOT / "examples" / "streaming"


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """The example's jobs.toml, on the suite's Redis instead of an embedded one."""
    return on_suite_redis(EXAMPLE / "jobs.toml", tmp_path, redis_url, key_prefix)


@pytest.fixture
def worker(make_daemon: MakeDaemon, config: Path) -> Daemon:
    return make_daemon(config).start().wait_running()


@pytest.fixture
def app_url(make_daemon: MakeDaemon, config: Path) -> Iterator[str]:
    with uvicorn_app(make_daemon, "examples.streaming.app:app", config) as url:
        yield url


def read_stream(
    http: httpx.Client, url: str, last_event_id: str | None = None, tokens: int | None = None
) -> list[ServerSentEvent]:
    """The events of the SSE stream at `url`, to its end; with `tokens`, only until that many
    token events came, then the connection is dropped."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    events: list[ServerSentEvent] = []
    with connect_sse(http, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            events.append(event)
            if tokens is not None and sum(e.event == "token" for e in events) == tokens:
                break  # leaving the block closes the response mid-stream
    return events


def test_a_dropped_stream_resumes_after_the_last_event(
    worker: Daemon, app_url: str, config: Path
) -> None:
    prompt = "How does a stream resume after the connection drops?"
    with httpx.Client(base_url=app_url, timeout=10) as http:
        started = http.post("/chat", json={"prompt": prompt})
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        url = f"/chat/{job_id}/events"

        before = read_stream(http, url, tokens=3)
        after = read_stream(http, url, last_event_id=before[-1].id)

    events = before + after
    names = [event.event for event in events]
    assert names[0] == "started"
    assert names[-1] == "succeeded"
    assert names.count("succeeded") == 1
    # every id once, in order, with no gap: the resumed stream starts right after the drop
    assert [event.id for event in events] == [event_id(n) for n in range(1, len(events) + 1)]

    text = "".join(event.json()["text"] for event in events if event.event == "token")
    with SyncClient.from_config(config) as jobs:
        result = jobs.job(job_id, queue="chat").result(timeout=10)
    assert text == result == "".join(tokens(prompt))
    progress = [event.json()["fraction"] for event in events if event.event == "progress"]
    assert progress[-1] == 1.0


def test_an_unknown_job_is_404_and_a_malformed_last_event_id_is_400(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=10) as http:
        assert http.get("/chat/no-such-job/events").status_code == 404
        job_id = http.post("/chat", json={"prompt": "hi"}).json()["job_id"]
        url = f"/chat/{job_id}/events"
        refused = http.get(url, headers={"Last-Event-ID": "not-an-id"})
        assert refused.status_code == 400
        assert "not an event id" in refused.json()["detail"]
        assert http.get(url, params={"last_event_id": "x7"}).status_code == 400
        assert http.post("/chat", json={"prompt": ""}).status_code == 422


def test_the_page_streams_with_eventsource(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=10) as http:
        page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "new EventSource(" in page.text
    assert "textContent" in page.text
    assert "innerHTML" not in page.text
