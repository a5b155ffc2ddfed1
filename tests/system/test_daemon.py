"""The `jobd` daemon as a real process: command line, exit codes, signals, and Redis faults.

Jobs record `start`/`end` in a ledger Redis (the session server) that is never faulted; the system
under test is either the session server (isolated by key prefix) or a private server (`own_redis`)
when the test kills or pauses Redis. Waits are condition-based; their deadlines are hang guards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobd.client import SyncClient
from jobd.model import JobStatus
from tests.support.daemon import REPO_ROOT, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 78
GUARD = 30.0
LEASE = 1.0
"""lease_timeout of the fault tests, seconds."""
"""Deadline of every wait: a hang guard, not a timing assertion."""

JOBD = (sys.executable, "-m", "jobd")


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    event: str
    job_id: str
    try_number: int
    pid: int
    time: float


class Ledger:
    """The `start|id|try|pid|time` / `end|...` lines the test jobs RPUSH to one ledger key."""

    def __init__(self, server: RedisServer, key: str) -> None:
        self.server = server
        self.key = key

    def entries(self) -> list[Entry]:
        with self.server.client() as conn:
            lines = conn.lrange(self.key, 0, -1)
        entries = []
        for line in lines:
            event, job_id, try_number, pid, at = line.decode().split("|")
            entries.append(Entry(event, job_id, int(try_number), int(pid), float(at)))
        return entries

    def events(self, event: str, job_id: str | None = None) -> list[Entry]:
        return [
            entry
            for entry in self.entries()
            if entry.event == event and (job_id is None or entry.job_id == job_id)
        ]

    def wait(self, event: str, count: int, job_id: str | None = None) -> list[Entry]:
        wait_until(
            lambda: len(self.events(event, job_id)) >= count,
            GUARD,
            interval=0.02,
            message=f"{count} {event!r} entries for {job_id or 'all jobs'} in {self.key}",
        )
        return self.events(event, job_id)


def run_jobd(
    *args: str, argv: Sequence[str] = JOBD, cwd: Path = REPO_ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a short jobd command to its end (JOBD_CONFIG only when given in ``env``)."""
    environ = {key: value for key, value in os.environ.items() if key != "JOBD_CONFIG"}
    # jobd need not be installed: the repository root makes it importable from any directory.
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")])
    )
    environ.update(env)
    return subprocess.run(
        [*argv, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


def wait_status(job: Any, status: JobStatus) -> None:
    wait_until(lambda: job.status() == status, GUARD, interval=0.02, message=f"{job!r} {status}")


@pytest.fixture
def ledger(redis_server: RedisServer, key_prefix: str) -> Ledger:
    return Ledger(redis_server, f"{key_prefix}:ledger")


@pytest.fixture
def client(redis_url: str, key_prefix: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        yield jobs


# -- command line -----------------------------------------------------------------------------

CONSOLE_SCRIPT = "import sys; from jobd.cli import main; sys.exit(main())"
"""What the `jobd` console script runs (it may not be installed in the test environment)."""

ENTRY_POINTS = {
    "python -m jobd": JOBD,
    "console script": (sys.executable, "-c", CONSOLE_SCRIPT),
    **({"jobd": (installed,)} if (installed := shutil.which("jobd")) else {}),
}


@pytest.mark.parametrize("argv", list(ENTRY_POINTS.values()), ids=list(ENTRY_POINTS))
def test_help_lists_every_option_and_command(argv: tuple[str, ...]) -> None:
    done = run_jobd("--help", argv=argv)
    assert done.returncode == EXIT_OK, done.stderr
    for option in ("--config", "--burst", "--log-level", "--log-format", "check", "run"):
        assert option in done.stdout, option


@pytest.mark.parametrize("argv", list(ENTRY_POINTS.values()), ids=list(ENTRY_POINTS))
def test_without_configuration_is_a_usage_error(argv: tuple[str, ...], tmp_path: Path) -> None:
    done = run_jobd(argv=argv, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "--config" in done.stderr
    assert "JOBD_CONFIG" in done.stderr
    assert "Traceback" not in done.stderr


def test_jobd_config_environment_variable_names_the_file(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix)
    done = run_jobd("check", JOBD_CONFIG=str(config))
    assert done.returncode == EXIT_OK, done.stderr
    assert str(config) in done.stdout


BAD_CONFIGS = {
    "bad toml": ("[worker\nconcurrency = 10\n", ["line 3, column 8"]),
    "unknown key": ("[worker]\nconcurency = 10\n", ["worker.concurency", "concurrency"]),
    "unimportable function": (
        '[functions.nope]\npath = "tests.jobs_for_tests:does_not_exist"\n',
        ["functions.nope.path", "does_not_exist"],
    ),
    "missing module": (
        '[functions.nope]\npath = "no_such_module_for_jobd_tests:run"\n',
        ["functions.nope.path", "no_such_module_for_jobd_tests"],
    ),
}


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_invalid_configuration_exits_78_naming_file_and_key(
    tmp_path: Path, redis_url: str, case: str, command: str
) -> None:
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / "jobs.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n' + text)
    done = run_jobd(command, "--config", str(config))
    assert done.returncode == EXIT_CONFIG, done.stdout + done.stderr
    assert str(config) in done.stderr
    for fragment in expected:
        assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_configuration_file_exits_78(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    done = run_jobd("--config", str(missing))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr


def test_check_accepts_a_good_configuration(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    config = write_config(
        tmp_path,
        redis_url,
        key_prefix,
        hooks={"startup": "tests.jobs_for_tests:startup"},
    )
    done = run_jobd("check", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    assert "OK" in done.stdout
    assert "Traceback" not in done.stderr


# -- the daemon's life ------------------------------------------------------------------------


def test_burst_processes_the_queued_jobs_and_exits_0(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    jobs = [client.enqueue("record", ledger.key) for _ in range(20)]
    daemon = make_daemon(write_config(tmp_path, redis_url, key_prefix), "--burst").start()
    assert daemon.wait_exit(GUARD) == EXIT_OK
    assert {job.status() for job in jobs} == {JobStatus.SUCCEEDED}
    ends = ledger.events("end")
    assert sorted(entry.job_id for entry in ends) == sorted(job.id for job in jobs)
    assert len(ledger.events("start")) == len(jobs)


def test_hooks_run_and_shutdown_sees_the_startup_state(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    marker = tmp_path / "shutdown-marker"
    config = write_config(
        tmp_path,
        redis_url,
        key_prefix,
        hooks={
            "startup": "tests.jobs_for_tests:startup",
            "shutdown": "tests.jobs_for_tests:shutdown",
        },
    )
    daemon = make_daemon(config, env={"SHUTDOWN_MARKER": str(marker)}).start()
    daemon.wait_running()
    assert not marker.exists()
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    assert marker.read_text() == "['started']"


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_lets_the_running_job_finish(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(write_config(tmp_path, redis_url, key_prefix)).start()
    daemon.wait_running()
    job = client.enqueue("sleep_record", 1.0, ledger.key)
    ledger.wait("start", 1, job.id)
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    assert len(ledger.events("end", job.id)) == 1
    info = job.info()
    assert info is not None
    assert info.status == JobStatus.SUCCEEDED
    assert info.tries == 1
    assert "draining" in daemon.log_text()


@pytest.mark.slow
def test_sigterm_requeues_a_job_that_outlives_the_drain_without_charging_a_try(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, worker={"drain_timeout": "0.5s"})
    first = make_daemon(config).start()
    first.wait_running()
    job = client.enqueue("sleep_record", 3, ledger.key)
    ledger.wait("start", 1, job.id)
    first.terminate()
    assert first.wait_exit() == EXIT_OK
    assert f"job {job.id}: requeued by drain" in first.log_text()
    info = job.info()
    assert info is not None
    assert info.status == JobStatus.QUEUED
    assert info.tries == 0
    assert ledger.events("end", job.id) == []

    second = make_daemon(config).start()
    second.wait_running()
    wait_status(job, JobStatus.SUCCEEDED)
    starts = ledger.events("start", job.id)
    ends = ledger.events("end", job.id)
    assert [entry.pid for entry in starts] == [first.pid, second.pid]
    assert [entry.try_number for entry in starts] == [1, 1]
    assert [entry.pid for entry in ends] == [second.pid]
    info = job.info()
    assert info is not None
    assert (info.tries, info.lost) == (1, 0)
    second.terminate()
    assert second.wait_exit() == EXIT_OK


def test_second_sigterm_cuts_the_drain_short(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, worker={"drain_timeout": "60s"})
    daemon = make_daemon(config).start()
    daemon.wait_running()
    job = client.enqueue("sleep_record", 30, ledger.key)
    ledger.wait("start", 1, job.id)
    daemon.terminate()
    daemon.wait_for_log(": draining")
    daemon.terminate()
    # The guard is far below the 30 s job and the 60 s drain_timeout: the second signal ends it.
    assert daemon.wait_exit(15) == EXIT_OK
    log = daemon.log_text()
    assert "received again" in log
    assert f"job {job.id}: requeued by drain" in log
    info = job.info()
    assert info is not None
    assert info.status == JobStatus.QUEUED
    assert info.tries == 0
    assert ledger.events("end", job.id) == []


def test_drain_does_not_wait_for_a_plain_def_job_thread(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    """A thread cannot be cancelled: the job is requeued and the process exits all the same."""
    config = write_config(tmp_path, redis_url, key_prefix, worker={"drain_timeout": "0.5s"})
    daemon = make_daemon(config).start()
    daemon.wait_running()
    job = client.enqueue("sync_sleep_record", 60, ledger.key)
    ledger.wait("start", 1, job.id)
    daemon.terminate()
    assert daemon.wait_exit(15) == EXIT_OK
    assert "exiting with 1 job threads still running" in daemon.log_text()
    info = job.info()
    assert info is not None
    assert (info.status, info.tries) == (JobStatus.QUEUED, 0)


# -- a worker killed --------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_job_another_worker_runs_it_again(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client: SyncClient,
    ledger: Ledger,
    make_daemon: MakeDaemon,
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix)
    a = make_daemon(config).start()
    a.wait_running()
    job = client.enqueue("sleep_record", 2, ledger.key)
    ledger.wait("start", 1, job.id)
    b = make_daemon(config).start()  # B is idle: A holds the only job
    b.wait_running()
    a.kill()
    assert a.returncode == -signal.SIGKILL

    ends = ledger.wait("end", 1, job.id)
    wait_status(job, JobStatus.SUCCEEDED)
    starts = ledger.events("start", job.id)
    assert [(entry.pid, entry.try_number) for entry in starts] == [(a.pid, 1), (b.pid, 2)]
    assert [entry.pid for entry in ends] == [b.pid]
    info = job.info()
    assert info is not None
    assert (info.tries, info.lost) == (2, 1)
    assert b.running
    assert f"job {job.id}: its worker died; queued again" in b.log_text()
    b.terminate()
    assert b.wait_exit() == EXIT_OK
    assert len(ledger.events("end", job.id)) == 1


# -- Redis faults -----------------------------------------------------------------------------


@pytest.mark.slow
def test_redis_killed_and_restarted_under_running_workers(
    tmp_path: Path, key_prefix: str, ledger: Ledger, make_daemon: MakeDaemon
) -> None:
    # appendfsync always: every acknowledged write survives kill -9, so "no job lost" is exact.
    # (With everysec the last second of writes, finishes included, may be lost by design.)
    with RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always") as server:
        # Two workers of concurrency 2: the running jobs are spread over both, so each worker's
        # reaper sees the other's heartbeat expired when Redis comes back.
        config = write_config(
            tmp_path,
            server.url,
            key_prefix,
            worker={"concurrency": 2, "lease_timeout": f"{LEASE}s"},
        )
        workers = [make_daemon(config).start() for _ in range(2)]
        for worker in workers:
            worker.wait_running()
        with SyncClient(server.url, key_prefix=key_prefix) as client:
            before = [client.enqueue("record", ledger.key) for _ in range(5)]
            ledger.wait("end", len(before))
            running = [client.enqueue("sleep_record", 2 * LEASE, ledger.key) for _ in range(4)]
            starts = ledger.wait("start", len(before) + len(running))
            assert {entry.pid for entry in starts[len(before) :]} == {w.pid for w in workers}
            old_run_id = server.run_id()

            server.kill()
            for worker in workers:
                worker.wait_for_log("redis unavailable")
            # Down for longer than the lease: every heartbeat has expired when Redis is back, and
            # the first worker to reconnect must not reap the other's jobs (reaper grace).
            time.sleep(2 * LEASE)  # the fault's duration, not a wait for a result
            server.restart()
            assert server.run_id() != old_run_id

            after = [client.enqueue("record", ledger.key) for _ in range(5)]
            jobs = [*before, *running, *after]
            for job in jobs:
                wait_status(job, JobStatus.SUCCEEDED)
            for job in jobs:
                assert len(ledger.events("start", job.id)) == 1, job
                assert len(ledger.events("end", job.id)) == 1, job
                info = job.info()
                assert info is not None
                assert (info.tries, info.lost) == (1, 0), job
        for worker in workers:
            assert worker.running
            log = worker.log_text()
            assert "redis available again" in log
            assert "worker died" not in log
            assert "lease lost" not in log
            worker.terminate()
        for worker in workers:
            assert worker.wait_exit() == EXIT_OK


@pytest.mark.slow
def test_redis_paused_past_the_lease_runs_no_job_twice(
    tmp_path: Path, own_redis: RedisServer, key_prefix: str, ledger: Ledger, make_daemon: MakeDaemon
) -> None:
    # Two workers of concurrency 3 share the 5 jobs: after the pause every heartbeat looks expired,
    # and a worker's reaper may run before the other worker renews (docs/reliability.md F9).
    config = write_config(
        tmp_path,
        own_redis.url,
        key_prefix,
        worker={"lease_timeout": f"{LEASE}s", "concurrency": 3},
    )
    workers = [make_daemon(config).start() for _ in range(2)]
    for worker in workers:
        worker.wait_running()
    with SyncClient(own_redis.url, key_prefix=key_prefix) as client:
        jobs = [client.enqueue("sleep_record", 5, ledger.key) for _ in range(5)]
        starts = ledger.wait("start", len(jobs))
        assert {entry.pid for entry in starts} == {worker.pid for worker in workers}
        own_redis.pause()
        try:
            time.sleep(3 * LEASE)  # the fault's duration, not a wait for a result
        finally:
            own_redis.resume()
        ledger.wait("end", len(jobs))
        for job in jobs:
            wait_status(job, JobStatus.SUCCEEDED)
        for job in jobs:
            assert len(ledger.events("start", job.id)) == 1, job
            assert len(ledger.events("end", job.id)) == 1, job
            info = job.info()
            assert info is not None
            assert (info.tries, info.lost) == (1, 0), job
    for worker in workers:
        assert worker.running
        log = worker.log_text()
        assert "worker died" not in log
        assert "lease lost" not in log
        worker.terminate()
    for worker in workers:
        assert worker.wait_exit() == EXIT_OK


@pytest.mark.parametrize("credentials", ["", ":wrong-password-4711@"], ids=["none", "wrong"])
def test_wrong_redis_password_exits_78(
    tmp_path: Path, key_prefix: str, credentials: str, make_daemon: MakeDaemon
) -> None:
    with RedisServer(tmp_path / "redis", appendonly=False, password="s3cret-pw") as server:
        url = f"redis://{credentials}127.0.0.1:{server.port}/0"
        daemon = make_daemon(write_config(tmp_path, url, key_prefix)).start()
        assert daemon.wait_exit(GUARD) == EXIT_CONFIG
    log = daemon.log_text()
    assert "credentials" in log
    assert "Traceback" not in log
    assert "wrong-password-4711" not in log
    assert "s3cret-pw" not in log
