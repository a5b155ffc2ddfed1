"""`jobd job follow` and the progress line of `jobd job show`, as an operator runs them against a
real daemon: the events come as they are emitted, the command ends with the job, and its exit
code is the job's outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobd.client import SyncClient
from tests.support.daemon import write_config
from tests.system.conftest import MakeDaemon
from tests.system.test_cli import jobd


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    return write_config(tmp_path, redis_url, key_prefix)


def enqueue(redis_url: str, key_prefix: str, function: str, *args: object, **kwargs: object) -> str:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        return jobs.enqueue(function, *args, **kwargs).id


def test_follow_prints_the_events_and_exits_0_when_the_job_succeeds(
    config: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    job_id = enqueue(redis_url, key_prefix, "stream_tokens", 3)
    make_daemon(config).start().wait_running()
    done = jobd("job", "follow", job_id, "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines] == [
        "started", "token", "token", "progress", "token", "succeeded",
    ]  # fmt: skip
    assert lines[1].split()[0] == "000000000002"
    assert lines[1].endswith('{"i": 0, "try": 1}')
    shown = jobd("job", "show", job_id, "--config", str(config))
    assert "progress  50%: half way" in shown.stdout
    # resumed after its end: nothing more to print, and the outcome is still the job's
    again = jobd("job", "follow", job_id, "--after", lines[-1].split()[0], "--config", str(config))
    assert (again.returncode, again.stdout) == (0, "")


def test_follow_exits_1_when_the_job_fails_and_prints_json_lines(
    config: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    job_id = enqueue(redis_url, key_prefix, "fail", "bad input", max_tries=1)
    make_daemon(config).start().wait_running()
    done = jobd("job", "follow", job_id, "--json", "--config", str(config))
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stdout.splitlines()]
    # followed while it ran, or after it failed: its end comes last either way
    assert [event["event"] for event in events][-1] == "failed"
    assert events[-1]["data"] == {"try": 1, "error": "ValueError", "message": "bad input"}
    assert events[-1]["id"].isdigit() and events[-1]["time"].startswith("20")
    assert f"job {job_id} failed" in done.stderr


def test_follow_names_what_is_wrong(config: Path) -> None:
    missing = jobd("job", "follow", "no-such-job", "--config", str(config))
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = jobd("job", "follow", "x", "--after", "soon", "--config", str(config))
    assert bad.returncode in (1, 2)
