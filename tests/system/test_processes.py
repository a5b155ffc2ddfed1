"""`jobd --processes N`: a supervisor and N real worker processes, on the session Redis.

Jobs record `start|id|try|pid` lines in a ledger list; the workers run one job at a time, so two
jobs that wait for each other (`meet`) run in two different workers. Waits are condition-based;
their deadlines are hang guards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobd.client import SyncClient
from jobd.model import JobStatus
from tests.support.daemon import REPO_ROOT, Daemon, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon
from tests.system.test_operations import Listener, has

GUARD = 30.0
EXIT_CONFIG = 78
JOBS = "tests.system.processes_jobs"
_WORKER_HTTP = re.compile(r"http: serving /healthz /readyz /metrics on http://127\.0\.0\.1:(\d+)")
_STARTED = re.compile(r"worker (\d+) \(pid (\d+)\) started")


@pytest.fixture
def client(redis_url: str, key_prefix: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        yield jobs


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    return write_config(
        tmp_path, redis_url, key_prefix,
        worker={"concurrency": 1, "drain_timeout": "10s"}, http={"max_loop_lag": "1s"},
        functions={name: {"path": f"{JOBS}:{name}"}
                   for name in ("meet", "hang_first_try", "exit_config", "block_first_try")},
    )  # fmt: skip


def start_group(make_daemon: MakeDaemon, config: Path, processes: int = 2) -> Daemon:
    group = make_daemon(config, "--processes", str(processes)).start()
    wait_until(lambda: group.get("/readyz")[0] == 200, GUARD, 0.05, "the group's /readyz 200")
    return group


def started_pids(group: Daemon) -> list[int]:
    """Every worker process the supervisor started, in order."""
    return [int(match[2]) for match in _STARTED.finditer(group.log_text())]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def ledger(server: RedisServer, key: str, event: str) -> list[list[str]]:
    with server.client() as conn:
        lines = [line.decode().split("|") for line in conn.lrange(key, 0, -1)]
    return [line for line in lines if line[0] == event]


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def worker_metrics(group: Daemon) -> list[str]:
    """The /metrics of each worker, from its private port (named in its startup line)."""
    import urllib.request

    texts = []
    for port in _WORKER_HTTP.findall(group.log_text()):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            texts.append(response.read().decode())
    return texts


def test_two_workers_take_jobs_and_serve_one_metrics_then_drain(
    make_daemon: MakeDaemon, config: Path, client: SyncClient, redis_server: RedisServer,
    key_prefix: str,
) -> None:  # fmt: skip
    for _ in range(3):  # queue depth as both workers read it at startup: scheduled = 3
        client.enqueue("meet", "unused", 1, delay=3600)
    group = start_group(make_daemon, config)
    key = f"{key_prefix}:meet"
    jobs = [client.enqueue("meet", key, 2) for _ in range(2)]
    pids = {job.result(timeout=GUARD) for job in jobs}
    assert len(pids) == 2 and pids <= set(started_pids(group)), (pids, started_pids(group))

    succeeded = {"queue": "default", "function": "meet", "outcome": "succeeded"}
    scheduled = {"queue": "default", "state": "scheduled"}

    def workers_counted() -> bool:
        texts = worker_metrics(group)
        return len(texts) == 2 and all(
            sample(text, "jobd_jobs_finished_total", **succeeded) == 1
            and sample(text, "jobd_queue_jobs", **scheduled) == 3
            for text in texts
        )

    wait_until(workers_counted, GUARD, 0.05, "each worker: 1 job succeeded, 3 jobs scheduled")
    status, body = group.get("/metrics")
    assert status == 200
    text = body.decode()
    assert sample(text, "jobd_jobs_finished_total", **succeeded) == 2  # summed
    assert sample(text, "jobd_queue_jobs", **scheduled) == 3  # the shared queue, not doubled
    assert sample(text, "jobd_worker_slots") == 2
    assert sample(text, "jobd_supervisor_workers") == 2
    assert group.get("/healthz") == (200, b"ok\n")

    # SIGTERM: both workers drain; the jobs they run finish (drain_timeout 10 s), exit 0
    slow = f"{key_prefix}:slow"
    draining = [client.enqueue("meet", slow, 2, 0.5) for _ in range(2)]
    wait_until(lambda: len(ledger(redis_server, slow, "start")) == 2, GUARD, 0.02, "2 starts")
    group.terminate()
    assert group.wait_exit() == 0, group.log_text()
    assert [job.status() for job in draining] == [JobStatus.SUCCEEDED] * 2
    assert len(ledger(redis_server, slow, "end")) == 2
    assert "draining every worker" in group.log_text()
    assert all(gone(pid) for pid in started_pids(group))


def test_a_killed_worker_is_restarted_and_its_job_runs_again(
    make_daemon: MakeDaemon, config: Path, client: SyncClient, redis_server: RedisServer,
    key_prefix: str,
) -> None:  # fmt: skip
    group = start_group(make_daemon, config)
    key = f"{key_prefix}:hang"
    job = client.enqueue("hang_first_try", key)
    wait_until(lambda: ledger(redis_server, key, "start"), GUARD, 0.02, "the first try")
    victim = int(ledger(redis_server, key, "start")[0][3])
    os.kill(victim, signal.SIGKILL)
    # the lease expires, the job is reaped and tried again; the worker comes back as a new process
    assert job.result(timeout=GUARD) != victim
    assert [line[2] for line in ledger(redis_server, key, "end")] == ["2"]
    wait_until(lambda: len(started_pids(group)) == 3, GUARD, 0.05, "a third worker process")
    assert victim not in started_pids(group)[2:]
    assert "killed by SIGKILL" in group.log_text()
    wait_until(lambda: group.get("/readyz")[0] == 200, GUARD, 0.05, "ready again")
    metrics = group.get("/metrics")[1].decode()
    assert sample(metrics, "jobd_supervisor_restarts_total", reason="signal") == 1
    assert sample(metrics, "jobd_supervisor_workers_running") == 2
    group.terminate()
    assert group.wait_exit() == 0, group.log_text()


def test_a_worker_exiting_78_stops_the_group_with_78(
    make_daemon: MakeDaemon, config: Path, client: SyncClient
) -> None:
    group = start_group(make_daemon, config)
    client.enqueue("exit_config")
    assert group.wait_exit() == EXIT_CONFIG, group.log_text()
    assert "exited with 78 (configuration or Redis credential error): stopping every worker" in (
        group.log_text()
    )
    assert all(gone(pid) for pid in started_pids(group))


def test_workers_drain_and_end_when_the_supervisor_is_killed(
    make_daemon: MakeDaemon, config: Path
) -> None:
    group = start_group(make_daemon, config)
    pids = started_pids(group)
    group.kill()  # SIGKILL: nothing forwarded; the kernel tells the workers (PR_SET_PDEATHSIG)
    wait_until(lambda: all(gone(pid) for pid in pids), GUARD, 0.05, "the workers to end")
    assert group.log_text().count("the supervisor is gone: draining") == 2


def test_only_the_supervisor_talks_to_systemd_and_a_blocked_worker_is_restarted(
    make_daemon: MakeDaemon, config: Path, client: SyncClient, redis_server: RedisServer,
    key_prefix: str,
) -> None:  # fmt: skip
    name = f"jobd-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    try:
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000"}
        group = make_daemon(config, "--processes", "2", env=env).start()
        ready = listener.receive_until(has("READY=1"), "READY=1")
        assert "STATUS=2/2 workers running" in ready
        assert group.log_text().count(") ready") == 2  # READY=1 only once both workers are
        listener.receive_until(has("WATCHDOG=1"), "WATCHDOG=1 from the supervisor")

        # a job blocks its worker's event loop: /healthz names it, then the worker's pings to the
        # supervisor stop and it is killed and restarted, as systemd would do with one worker
        key = f"{key_prefix}:block"
        job = client.enqueue("block_first_try", key, 60)
        wait_until(lambda: ledger(redis_server, key, "start"), GUARD, 0.02, "the first try")
        blocked = int(ledger(redis_server, key, "start")[0][3])
        wait_until(lambda: group.get("/healthz")[0] == 503, GUARD, 0.05, "/healthz 503")
        body = group.get("/healthz")[1].decode()
        assert f"(pid {blocked}): event loop blocked" in body, body
        group.wait_for_log(f"worker {started_pids(group).index(blocked) + 1} (pid {blocked}) sent no "
                           "watchdog ping for 3 s: killing it", GUARD)  # fmt: skip
        wait_until(lambda: len(started_pids(group)) == 3, GUARD, 0.05, "a third worker process")
        assert job.result(timeout=GUARD) != blocked  # its job ran again (reaped)
        wait_until(lambda: group.get("/healthz")[0] == 200, GUARD, 0.05, "/healthz 200 again")

        group.terminate()
        stopping = listener.receive_until(has("STOPPING=1"), "STOPPING=1")
        assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in stopping)
        assert group.wait_exit() == 0, group.log_text()
        while listener.receive(0.2) is not None:
            pass
    finally:
        listener.close()
    assert listener.count("READY=1") == 1 and listener.count("STOPPING=1") == 1
    lines = [line for message in listener.messages for line in message]
    assert not [line for line in lines if line.startswith("X_JOBD")], lines  # the workers' own
    assert "could not notify systemd" not in group.log_text()


def test_a_bad_configuration_exits_78_at_once_with_the_single_worker_message(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, worker={"concurrency": 0})
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "jobd", "--config", str(config), *extra]
        return subprocess.run(
            command, cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=GUARD
        )

    runs = [run(), run("--processes", "2")]
    assert [run.returncode for run in runs] == [EXIT_CONFIG, EXIT_CONFIG]
    assert runs[1].stderr == runs[0].stderr and "concurrency" in runs[0].stderr
    assert "started" not in runs[1].stderr
