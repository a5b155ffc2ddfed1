"""The README's example (examples/quickstart) as a user runs it: the real daemon on the example's
jobs.toml (on the suite's Redis instead of an embedded one), `uvicorn examples.quickstart.app:app`
in its own process, one request that enqueues and one that reads the job's events as
Server-Sent Events to the job's end. tests/unit/test_docs_examples.py checks that the README shows
these files as they are."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from jobd.client import SyncClient
from tests.support.daemon import REPO_ROOT, Daemon
from tests.support.examples import on_suite_redis, uvicorn_app
from tests.system.conftest import MakeDaemon

EXAMPLE = REPO_ROOT / "examples" / "quickstart"


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """The example's jobs.toml, on the suite's Redis and a free port."""
    source = EXAMPLE / "jobs.toml"
    assert tomllib.loads(source.read_text())["redis"]["url"] == "embedded"  # what the README shows
    return on_suite_redis(source, tmp_path, redis_url, key_prefix, http={"listen": "127.0.0.1:0"})


@pytest.fixture
def worker(make_daemon: MakeDaemon, config: Path) -> Daemon:
    return make_daemon(config).start().wait_running()


@pytest.fixture
def app_url(make_daemon: MakeDaemon, config: Path) -> Iterator[str]:
    with uvicorn_app(make_daemon, "examples.quickstart.app:app", config) as url:
        yield url


def test_the_readme_example_enqueues_and_streams_the_jobs_events(
    worker: Daemon, app_url: str, config: Path
) -> None:
    url = "https://example.com/report"
    with httpx.Client(base_url=app_url, timeout=10) as http:
        started = http.post("/summaries", params={"url": url})
        assert started.status_code == 200, started.text
        job_id = started.json()["job_id"]
        with connect_sse(http, "GET", f"/summaries/{job_id}/events") as source:
            assert source.response.status_code == 200
            events = list(source.iter_sse())

    names = [event.event for event in events]
    assert names == ["started", "step", "step", "step", "succeeded"], names
    steps = [event.json()["text"] for event in events if event.event == "step"]
    assert steps == [f"fetching {url}", f"reading {url}", f"summarising {url}"]
    with SyncClient.from_config(config) as jobs:
        assert jobs.job(job_id).result(timeout=10) == f"a summary of {url}"
