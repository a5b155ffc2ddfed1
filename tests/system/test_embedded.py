"""`redis.url = "embedded"` with a real server: the daemon starts its private Redis, producers find
it through the discovery file, jobs queued when it stops run after a restart, a server left behind
by a killed daemon is reused, and one daemon owns a data dir. `jobd.redis.embedded` itself is run with
every server binary this machine has (the bundled valkey-server, redis-server on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobd.client import SyncClient
from jobd.config.loader import load
from jobd.model import JobStatus
from jobd.redis import embedded
from tests.support.daemon import REPO_ROOT, write_config
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon

GUARD = 30.0
"""Deadline of every wait: a hang guard, not a timing assertion."""
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 78


def discovery(config: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((config.parent / ".jobd" / "redis.json").read_text())
    return record


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[None]:
    """Kill an embedded server a failed test left running (found through its discovery file)."""
    yield
    for path in tmp_path.rglob("redis.json"):
        pid = json.loads(path.read_text())["pid"]
        if embedded._alive(pid):
            os.kill(pid, 9)


def records(ledger: redis.Redis, key: str) -> int:
    """How many jobs recorded their end under `key` in the ledger."""
    return sum(entry.startswith(b"end|") for entry in ledger.lrange(key, 0, -1))


@pytest.mark.usefixtures("leftovers")
def test_jobs_queued_when_the_daemon_stops_run_after_a_restart(
    tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon, ledger: redis.Redis
) -> None:
    config = write_config(tmp_path, "embedded", key_prefix)
    first = make_daemon(config).start().wait_running()
    record = discovery(config)
    assert record["url"] == f"unix://{tmp_path / '.jobd' / 'redis.sock'}"
    assert f"embedded Redis at {record['url']}" in first.log_text()
    key = f"{key_prefix}:later"
    with SyncClient.from_config(config) as jobs:
        persistence = jobs.redis.config_get("append*")
        assert (persistence["appendonly"], persistence["appendfsync"]) == ("yes", "everysec")
        assert jobs.enqueue("echo", 1).result(timeout=GUARD) == {"args": [1], "kwargs": {}}
        # Queue "later" is consumed only after the restart; one job of it is scheduled.
        waiting = [
            jobs.enqueue("record", key, queue="later"),
            jobs.enqueue("record", key, queue="later", delay=0.2),
        ]
        assert [job.status() for job in waiting] == [JobStatus.QUEUED, JobStatus.SCHEDULED]

    # A second daemon on the same data dir is refused: one owner per server.
    second = make_daemon(config).start()
    assert second.wait_exit() == EXIT_CONFIG
    assert f"another jobd (pid {first.pid}) runs the embedded Redis in" in second.log_text()

    first.terminate()
    assert first.wait_exit() == EXIT_OK
    assert "embedded Redis stopped" in first.log_text()
    assert not embedded._alive(record["pid"])
    assert not (tmp_path / ".jobd" / "redis.json").exists()
    assert records(ledger, key) == 0

    write_config(tmp_path, "embedded", key_prefix, worker={"queues": ["default", "later"]})
    third = make_daemon(config).start().wait_running()
    wait_until(lambda: records(ledger, key) == 2, GUARD, message="both jobs ran after the restart")
    with SyncClient.from_config(config) as jobs:
        # the ledger is written inside the jobs; their outcome is stored just after they return
        wait_until(
            lambda: (
                [jobs.job(job.id, queue="later").status() for job in waiting]
                == [JobStatus.SUCCEEDED] * 2
            ),
            GUARD,
            message="both jobs stored as succeeded",
        )
    third.terminate()
    assert third.wait_exit() == EXIT_OK


@pytest.mark.usefixtures("leftovers")
def test_a_killed_daemon_leaves_its_server_and_the_next_one_reuses_it(
    tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon, ledger: redis.Redis
) -> None:
    config = write_config(tmp_path, "embedded", key_prefix)
    first = make_daemon(config).start().wait_running()
    pid = discovery(config)["pid"]
    first.kill()
    assert embedded._alive(pid), "the server outlives a SIGKILLed daemon"
    key = f"{key_prefix}:reused"
    with SyncClient.from_config(config) as jobs:
        job = jobs.enqueue("record", key)
    second = make_daemon(config).start().wait_running()
    assert f"reusing the server (pid {pid}) an earlier jobd left running" in second.log_text()
    wait_until(lambda: records(ledger, key) == 1, GUARD, message="the job ran")
    with SyncClient.from_config(config) as jobs:
        wait_until(
            lambda: jobs.job(job.id).status() == JobStatus.SUCCEEDED,
            GUARD,
            message="the job stored as succeeded",
        )
    second.terminate()
    assert second.wait_exit() == EXIT_OK
    wait_until(lambda: not embedded._alive(pid), GUARD, message="the reused server stopped")


def test_operator_commands_say_when_the_embedded_server_is_not_running(tmp_path: Path) -> None:
    config = write_config(tmp_path, "embedded", "p")
    environ = {key: value for key, value in os.environ.items() if key != "JOBD_CONFIG"}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "jobd", "status", "--config", str(config)],
        capture_output=True, text=True, env=environ, timeout=GUARD, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_FAILURE, done
    assert done.stderr == (
        f'jobd status: the embedded Redis of {config} (redis.url = "embedded") is not running: '
        f"start the worker first (jobd --config {config}); it writes "
        f"{tmp_path / '.jobd' / 'redis.json'}\n"
    )


SERVERS = {
    "bundled valkey-server": embedded.bundled_server(),
    "redis-server": shutil.which("redis-server"),
}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_server_keeps_its_data_across_restarts(tmp_path: Path, name: str) -> None:
    binary = SERVERS[name]
    if binary is None:
        pytest.skip(f"no {name} on this machine")
    config = write_config(tmp_path, "embedded", "p", redis={"data_dir": "state"})
    settings = load(config)
    server = embedded.start(settings, server=binary)
    try:
        assert server.url == f"unix://{tmp_path / 'state' / 'redis.sock'}"
        assert stat.S_IMODE((tmp_path / "state" / "redis.sock").stat().st_mode) == 0o700
        assert embedded.client_url(settings) == server.url
        with redis.Redis.from_url(server.url) as connection:
            connection.set("kept", "yes")
    finally:
        server.stop()
    assert not embedded._alive(server.pid)
    again = embedded.start(settings, server=binary)
    try:
        assert again.pid != server.pid
        with redis.Redis.from_url(again.url) as connection:
            assert connection.get("kept") == b"yes"
    finally:
        again.stop()
