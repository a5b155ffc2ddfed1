"""The README's example (examples/quickstart) as a user runs it: the real daemon on the example's
jobs.toml (on the suite's Redis instead of an embedded one), `uvicorn examples.quickstart.app:app`
in its own process, one request that enqueues and one that reads the job's events as
Server-Sent Events to the job's end. tests/unit/test_docs_examples.py checks that the README shows
these files as they are."""

from __future__ import annotations

import re
import signal
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tomli_w
from httpx_sse import connect_sse

from jobd.client import SyncClient
from tests.support.daemon import REPO_ROOT, Daemon
from tests.system.conftest import MakeDaemon

EXAMPLE = REPO_ROOT / "examples" / "quickstart"


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """The example's jobs.toml, on the suite's Redis and a free port."""
    document = tomllib.loads((EXAMPLE / "jobs.toml").read_text())
    assert document["redis"]["url"] == "embedded"  # what the README shows
    document["redis"] = {"url": redis_url, "key_prefix": key_prefix}
    document["http"] = {"listen": "127.0.0.1:0"}
    path = tmp_path / "jobs.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture
def worker(make_daemon: MakeDaemon, config: Path) -> Daemon:
    return make_daemon(config).start().wait_running()


@pytest.fixture
def app_url(make_daemon: MakeDaemon, config: Path) -> Iterator[str]:
    command = [sys.executable, "-m", "uvicorn", "examples.quickstart.app:app", "--port", "0"]
    server = make_daemon(None, command=command, env={"JOBD_CONFIG": str(config)}).start()
    server.wait_for_log("Uvicorn running on")
    match = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", server.log_text())
    assert match, server.log_text()
    yield match[1]
    server.terminate()
    assert server.wait_exit() in (0, -signal.SIGTERM), server.log_text()
    assert "Application shutdown complete" in server.log_text()


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
