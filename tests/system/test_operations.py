"""Operating the daemon: the HTTP probes and metrics, systemd's notify protocol, and the logs.

Every test runs the real `jobd` daemon as a subprocess against a real redis-server: the session
server (isolated by key prefix), or a private one when the test pauses, kills or locks Redis. The
probe port is read from the daemon's `http: serving … on http://HOST:PORT` line
(`http.listen = "127.0.0.1:0"`). Waits are condition-based; their deadlines are hang guards.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from jobd.client.sync_client import SyncClient, SyncJob
from jobd.model import JobStatus
from tests.support.daemon import Daemon, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon

EXIT_OK = 0
EXIT_CONFIG = 78
GUARD = 30.0
"""Deadline of every wait: a hang guard, not a timing assertion."""
FAST_RETRY = {"retry": {"base": "10ms", "max": "50ms", "jitter": False}}
"""`[defaults]` of tests whose jobs are retried: the next try is due at once."""
SECRET = "secret-argument-42"
"""A job argument value that must never reach the logs."""
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ABORTED}


@pytest.fixture
def jobs(redis_url: str, key_prefix: str) -> Iterator[SyncClient]:
    """A producer on the session server, under the test's key prefix."""
    with SyncClient(redis_url, key_prefix=key_prefix) as client:
        yield client


def wait_status(job: SyncJob, *statuses: JobStatus) -> None:
    wanted = set(statuses) or FINAL
    wait_until(lambda: job.status() in wanted, GUARD, interval=0.02, message=f"{job!r} {wanted}")


def wait_get(daemon: Daemon, path: str, status: int, text: str = "") -> bytes:
    """Poll GET `path` until it answers `status` with `text` in its body; returns the body."""
    seen: list[tuple[int, bytes]] = []

    def answered() -> bool:
        seen.append(daemon.get(path))
        return seen[-1][0] == status and text.encode() in seen[-1][1]

    wait_until(answered, GUARD, interval=0.05, message=f"GET {path} -> {status} {text!r}")
    return seen[-1][1]


# -- metrics helpers --------------------------------------------------------------------------


def scrape(daemon: Daemon) -> list[Sample]:
    """Every sample of /metrics, through prometheus_client's own parser."""
    status, headers, body = daemon.http("GET", "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain"), headers
    return [
        sample
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there is none)."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def names(samples: list[Sample]) -> set[str]:
    return {sample.name for sample in samples}


# -- /healthz ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_healthz_is_503_while_a_job_blocks_the_event_loop(
    tmp_path: Path, redis_url: str, key_prefix: str, jobs: SyncClient, make_daemon: MakeDaemon
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, http={"max_loop_lag": "0.5s"})
    daemon = make_daemon(config).start()
    daemon.wait_running()
    wait_get(daemon, "/healthz", 200, "ok")

    job = jobs.enqueue("block_loop", 3)
    body = wait_get(daemon, "/healthz", 503)
    assert b"event loop blocked" in body
    # The probes run on a thread of their own: a blocked loop is answered, never silence.
    status, body = daemon.get("/metrics")
    assert status == 200
    assert b"jobd_jobs_running" in body

    wait_get(daemon, "/healthz", 200, "ok")
    wait_status(job)
    assert job.status() == JobStatus.SUCCEEDED
    assert job.result() == "unblocked"
    assert daemon.get("/readyz") == (200, b"ready\n")
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


def test_healthz_is_200_while_waiting_for_redis_at_startup(
    tmp_path: Path, own_redis: RedisServer, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    config = write_config(tmp_path, own_redis.url, key_prefix, http={"max_loop_lag": "0.2s"})
    own_redis.pause()
    try:
        daemon = make_daemon(config).start()
        daemon.http_port()
        wait_get(daemon, "/readyz", 503, "starting")
        # ten times max_loop_lag without Redis: the loop is idle, not blocked
        for _ in range(20):
            assert daemon.get("/healthz") == (200, b"ok\n")
            time.sleep(0.1)  # the length of the check, not a wait for a result
    finally:
        own_redis.resume()
    daemon.wait_running()
    wait_get(daemon, "/readyz", 200, "ready")


# -- /readyz ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_readyz_is_503_while_redis_is_paused(
    tmp_path: Path, own_redis: RedisServer, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    daemon = make_daemon(write_config(tmp_path, own_redis.url, key_prefix)).start()
    daemon.wait_running()
    wait_get(daemon, "/readyz", 200, "ready")
    assert value(scrape(daemon), "jobd_worker_ready") == 1

    own_redis.pause()
    try:
        body = wait_get(daemon, "/readyz", 503, "redis unavailable")
        assert body.startswith(b"not ready")
        # Not ready, but alive: the event loop is not blocked by a Redis that does not answer.
        assert daemon.get("/healthz") == (200, b"ok\n")
        samples = scrape(daemon)
        assert value(samples, "jobd_redis_up") == 0
        assert value(samples, "jobd_worker_ready") == 0
    finally:
        own_redis.resume()

    wait_get(daemon, "/readyz", 200, "ready")
    samples = scrape(daemon)
    assert value(samples, "jobd_redis_up") == 1
    assert value(samples, "jobd_worker_ready") == 1
    assert value(samples, "jobd_redis_reconnects_total") >= 1
    log = daemon.log_text()
    assert "redis unavailable" in log
    assert "redis available again" in log
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


def test_readyz_is_503_while_draining(
    tmp_path: Path, redis_url: str, key_prefix: str, jobs: SyncClient, make_daemon: MakeDaemon
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, worker={"drain_timeout": "60s"})
    daemon = make_daemon(config).start()
    daemon.wait_running()
    wait_get(daemon, "/readyz", 200, "ready")
    job = jobs.enqueue("sleep", 60)
    wait_status(job, JobStatus.RUNNING)

    daemon.terminate()
    body = wait_get(daemon, "/readyz", 503)
    assert b"draining" in body
    assert daemon.get("/healthz") == (200, b"ok\n")
    assert daemon.running
    daemon.terminate()  # the second signal ends the drain: the job is requeued
    assert daemon.wait_exit(15) == EXIT_OK
    assert job.status() == JobStatus.QUEUED


# -- what else the server answers -------------------------------------------------------------


def test_unknown_paths_are_404_and_other_methods_405(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    daemon = make_daemon(write_config(tmp_path, redis_url, key_prefix)).start()
    daemon.wait_running()
    for path in ("/", "/nope", "/metrics/extra", "/healthz/", "/HEALTHZ"):
        status, body = daemon.get(path)
        assert status == 404, path
        assert b"/healthz" in body, path
    # the query string is ignored
    assert daemon.get("/metrics?name[]=jobd_jobs_running")[0] == 200
    wait_get(daemon, "/healthz?verbose=1", 200, "ok")

    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        for path in ("/metrics", "/healthz", "/readyz", "/nope"):
            status, headers, _ = daemon.http(method, path)
            assert status == 405, (method, path)
            assert headers.get("Allow") == "GET", (method, path, headers)
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


def test_a_taken_port_exits_78_naming_http_listen(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = write_config(tmp_path, redis_url, key_prefix, http={"listen": address})
        daemon = make_daemon(config).start()
        assert daemon.wait_exit(GUARD) == EXIT_CONFIG
    log = daemon.log_text()
    assert "http.listen" in log
    assert address in log
    assert "in use" in log
    assert "Traceback" not in log
    assert ": running" not in log


# -- /metrics ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_count_what_the_jobs_did(
    tmp_path: Path, redis_url: str, key_prefix: str, jobs: SyncClient, make_daemon: MakeDaemon
) -> None:
    config = write_config(
        tmp_path, redis_url, key_prefix, worker={"concurrency": 3}, defaults=FAST_RETRY
    )
    daemon = make_daemon(config).start()
    daemon.wait_running()

    before = scrape(daemon)
    assert value(before, "jobd_worker_slots") == 3
    assert value(before, "jobd_jobs_running") == 0
    assert value(before, "jobd_jobs_started_total") == 0
    assert value(before, "jobd_jobs_finished_total") == 0
    assert value(before, "jobd_job_duration_seconds_count") == 0
    # The counters the configuration names exist from the start, at 0, so that rate() and
    # increase() see the first failure; a function no configuration names has none yet.
    for name, labels in [
        ("jobd_jobs_finished_total", {"function": "fail", "outcome": "failed"}),
        ("jobd_jobs_finished_total", {"function": "echo", "outcome": "succeeded"}),
        ("jobd_jobs_started_total", {"function": "echo"}),
    ]:
        exact = {"queue": "default", **labels}
        assert [s.value for s in before if s.name == name and s.labels == exact] == [0], exact
    assert not [s for s in before if s.labels.get("function") == "unknown"]
    (build,) = [sample for sample in before if sample.name == "jobd_build_info"]
    assert build.value == 1
    assert set(build.labels) == {"version", "python"}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names(before)
    assert all(name.startswith(("jobd_", "process_", "python_")) for name in names(before)), names(
        before
    )

    sleeper = jobs.enqueue("sleep", 1.5)
    wait_status(sleeper, JobStatus.RUNNING)
    wait_until(lambda: value(scrape(daemon), "jobd_jobs_running") == 1, GUARD, interval=0.02)

    succeeding = [jobs.enqueue("echo", i) for i in range(3)]
    failing = jobs.enqueue("fail", max_tries=1)
    retried = jobs.enqueue("fail_until", 2, max_tries=3)
    unknown = jobs.enqueue("no_such_function_here", 1)
    later = jobs.enqueue("echo", "later", delay=3600)
    ran = [sleeper, *succeeding, failing, retried, unknown]
    for job in ran:
        wait_status(job)
    assert [job.status() for job in ran] == [JobStatus.SUCCEEDED] * 4 + [
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
    ]

    after = scrape(daemon)
    default = {"queue": "default"}
    assert value(after, "jobd_jobs_running") == 0
    assert value(after, "jobd_worker_slots") == 3
    assert value(after, "jobd_jobs_started_total", **default) == 8  # fail_until ran twice
    assert value(after, "jobd_jobs_started_total", function="echo") == 3
    assert value(after, "jobd_jobs_started_total", function="fail_until") == 2
    assert value(after, "jobd_jobs_started_total", function="unknown") == 1
    finished = "jobd_jobs_finished_total"
    assert value(after, finished, outcome="succeeded") == 5
    assert value(after, finished, function="fail_until", outcome="retried") == 1
    assert value(after, finished, function="fail_until", outcome="succeeded") == 1
    assert value(after, finished, function="fail", outcome="failed") == 1
    assert value(after, finished, function="unknown", outcome="failed") == 1
    assert value(after, finished) == 8
    assert value(after, "jobd_job_duration_seconds_count", **default) == 8
    assert value(after, "jobd_job_duration_seconds_count", function="sleep") == 1
    assert value(after, "jobd_job_duration_seconds_sum", function="sleep") >= 1
    assert value(after, "jobd_job_queue_wait_seconds_count", **default) == 8
    dead = "jobd_jobs_dead_lettered_total"
    assert value(after, dead, function="fail", reason="failed") == 1
    assert value(after, dead, function="unknown", reason="unknown_function") == 1
    assert value(after, dead) == 2

    # Queue depths come from the monitor's periodic refresh, not from the scrape: wait for one.
    depth = "jobd_queue_jobs"

    def refreshed() -> bool:
        samples = scrape(daemon)
        return (
            value(samples, depth, state="dead", **default) == 2
            and value(samples, depth, state="scheduled", **default) == 1
            and value(samples, depth, state="queued", **default) == 0
            and value(samples, depth, state="running", **default) == 0
        )

    wait_until(refreshed, GUARD, interval=0.2, message="queue depths refreshed")
    assert later.status() == JobStatus.SCHEDULED

    # Labels are bounded: no job id, and no function name that the configuration does not know.
    samples = scrape(daemon)
    job_ids = {job.id for job in [*ran, later]}
    for sample in samples:
        assert not job_ids & set(sample.labels.values()), sample
    status, text = daemon.get("/metrics")
    assert status == 200
    assert not [job_id for job_id in job_ids if job_id.encode() in text]
    assert b"no_such_function_here" not in text
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK


# -- systemd notify ---------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jobd-n-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Listener:
    """The systemd side of the notify protocol: a bound unix datagram socket."""

    def __init__(self, address: str) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.messages: list[list[str]] = []
        """Each datagram as its lines (`READY=1`, `STATUS=…`)."""

    def close(self) -> None:
        self.socket.close()

    def receive(self, timeout: float) -> list[str] | None:
        """The next datagram, or None when none arrives within `timeout` seconds."""
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(65536)
        except TimeoutError:
            return None
        message = data.decode().split("\n")
        self.messages.append(message)
        return message

    def receive_until(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        """Receive until a datagram satisfies `predicate` (a hang guard of GUARD seconds)."""
        while True:
            message = self.receive(GUARD)
            assert message is not None, f"no {what} within {GUARD}s; got {self.messages}"
            if predicate(message):
                return message

    def index(self, line: str, start: int = 0) -> int:
        """Index of the first datagram (from `start`) that has `line`."""
        for position in range(start, len(self.messages)):
            if line in self.messages[position]:
                return position
        raise AssertionError(f"no {line!r} in {self.messages[start:]}")

    def count(self, line: str, start: int = 0, stop: int | None = None) -> int:
        return sum(line in message for message in self.messages[start:stop])


@pytest.fixture
def listeners() -> Iterator[Callable[[str], Listener]]:
    made: list[Listener] = []

    def make(address: str) -> Listener:
        made.append(Listener(address))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def has(line: str) -> Callable[[list[str]], bool]:
    return lambda message: line in message


def test_sd_notify_ready_watchdog_status_and_stopping_in_order(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    jobs: SyncClient,
    short_dir: Path,
    listeners: Callable[[str], Listener],
    make_daemon: MakeDaemon,
) -> None:
    path = str(short_dir / "notify")
    listener = listeners(path)
    config = write_config(
        tmp_path,
        redis_url,
        key_prefix,
        worker={"drain_timeout": "60s"},
        hooks={"startup": "tests.jobs_for_tests:startup"},
    )
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    daemon = make_daemon(config, env=env).start()

    ready = listener.receive_until(has("READY=1"), "READY=1")
    assert ": running" in daemon.log_text()  # Redis answered and the startup hook is done
    (status,) = [line for line in ready if line.startswith("STATUS=")]
    assert re.fullmatch(r"STATUS=running: 0 running, 0 processed", status), ready
    ready_at = len(listener.messages) - 1
    for _ in range(3):  # every half of WATCHDOG_USEC, from the event loop
        listener.receive_until(has("WATCHDOG=1"), "WATCHDOG=1")

    job = jobs.enqueue("sleep", 60)
    wait_status(job, JobStatus.RUNNING)
    # STATUS= lines follow the running count (sent with each heartbeat)
    listener.receive_until(
        lambda message: any(re.match(r"STATUS=running: 1 running", line) for line in message),
        "STATUS with 1 running job",
    )

    daemon.terminate()
    stopping = listener.receive_until(has("STOPPING=1"), "STOPPING=1")
    stopping_at = len(listener.messages) - 1
    (extend,) = [line for line in stopping if line.startswith("EXTEND_TIMEOUT_USEC=")]
    assert int(extend.split("=", 1)[1]) >= 60 * 1_000_000  # at least the drain_timeout
    # A long drain keeps the watchdog fed, or systemd would kill the draining worker.
    listener.receive_until(has("WATCHDOG=1"), "WATCHDOG=1 while draining")
    daemon.terminate()
    assert daemon.wait_exit(15) == EXIT_OK
    while listener.receive(0.2) is not None:
        pass

    messages = listener.messages
    assert listener.index("READY=1") == ready_at
    assert listener.count("READY=1") == 1
    assert listener.count("WATCHDOG=1", stop=ready_at) == 0
    assert listener.index("WATCHDOG=1") > ready_at
    assert listener.count("WATCHDOG=1", ready_at, stopping_at) >= 3
    assert listener.count("STOPPING=1") == 1
    assert listener.index("STOPPING=1") == stopping_at
    assert all(line.partition("=")[0].isupper() for message in messages for line in message)
    assert "could not notify systemd" not in daemon.log_text()


def test_sd_notify_to_an_abstract_socket(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    listeners: Callable[[str], Listener],
    make_daemon: MakeDaemon,
) -> None:
    name = f"jobd-test-{uuid.uuid4().hex}"
    listener = listeners("\0" + name)
    config = write_config(tmp_path, redis_url, key_prefix)
    daemon = make_daemon(config, env={"NOTIFY_SOCKET": "@" + name})
    daemon.env.pop("WATCHDOG_USEC", None)
    daemon.start()
    listener.receive_until(has("READY=1"), "READY=1")
    daemon.terminate()
    stopping = listener.receive_until(has("STOPPING=1"), "STOPPING=1")
    assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in stopping)
    assert daemon.wait_exit() == EXIT_OK
    assert listener.count("WATCHDOG=1") == 0  # no WATCHDOG_USEC, no pings


def test_without_notify_socket_nothing_is_sent(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    short_dir: Path,
    listeners: Callable[[str], Listener],
    make_daemon: MakeDaemon,
) -> None:
    path = str(short_dir / "notify")
    listener = listeners(path)
    config = write_config(tmp_path, redis_url, key_prefix)
    daemon = make_daemon(config, env={"WATCHDOG_USEC": "200000"})
    daemon.env.pop("NOTIFY_SOCKET", None)
    daemon.start()
    daemon.wait_running()
    assert listener.receive(1.0) is None  # five watchdog periods
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    assert listener.receive(0.2) is None
    assert "systemd" not in daemon.log_text()


# -- logs -------------------------------------------------------------------------------------


def json_lines(daemon: Daemon) -> list[dict[str, Any]]:
    """Every line of the daemon's output, each of which must be one JSON object."""
    entries = []
    for line in daemon.log_text().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def events(entries: list[dict[str, Any]], event: str, job: SyncJob) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry.get("event") == event and entry["job_id"] == job.id]


def test_json_logs_one_object_per_event_without_job_arguments(
    tmp_path: Path, redis_url: str, key_prefix: str, jobs: SyncClient, make_daemon: MakeDaemon
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, defaults=FAST_RETRY)
    daemon = make_daemon(config, "--log-format", "json").start()
    daemon.wait_running()
    echoed = jobs.enqueue("echo", SECRET, note=SECRET)
    synced = jobs.enqueue("sync_echo", [SECRET], {"nested": SECRET})
    retried = jobs.enqueue("fail_until", 2, max_tries=3)
    failing = jobs.enqueue("fail", max_tries=1)
    unknown = jobs.enqueue("no_such_function_here", SECRET)
    for job in (echoed, synced, retried, failing, unknown):
        wait_status(job)
    assert echoed.result() == {"args": [SECRET], "kwargs": {"note": SECRET}}
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK

    entries = json_lines(daemon)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        datetime.fromisoformat(entry["time"])
    assert SECRET not in daemon.log_text()
    worker_events = [entry["event"] for entry in entries if entry.get("worker")]
    assert worker_events == ["worker_running", "worker_draining", "worker_stopped"]

    job_fields = {"event", "job_id", "function", "queue", "try"}
    for job, function in ((echoed, "echo"), (synced, "sync_echo")):
        (started,) = events(entries, "job_started", job)
        assert job_fields <= set(started)
        assert (started["function"], started["queue"], started["try"]) == (function, "default", 1)
        (finished,) = events(entries, "job_finished", job)
        assert job_fields | {"outcome", "duration"} <= set(finished)
        assert (finished["function"], finished["outcome"], finished["try"]) == (
            function,
            "succeeded",
            1,
        )
        assert isinstance(finished["duration"], float)
        assert finished["duration"] >= 0

    assert [entry["try"] for entry in events(entries, "job_started", retried)] == [1, 2]
    (retry,) = events(entries, "job_retry", retried)
    assert (retry["function"], retry["try"], retry["outcome"], retry["level"]) == (
        "fail_until",
        1,
        "retried",
        "warning",
    )
    assert isinstance(retry["duration"], float)
    assert datetime.fromisoformat(retry["next_try_at"]).tzinfo is not None
    (succeeded,) = events(entries, "job_finished", retried)
    assert (succeeded["try"], succeeded["outcome"]) == (2, "succeeded")

    for job, function, reason in (
        (failing, "fail", "failed"),
        (unknown, "no_such_function_here", "unknown_function"),
    ):
        (dead,) = events(entries, "job_dead", job)
        assert job_fields | {"outcome", "duration"} <= set(dead)
        assert (dead["function"], dead["try"], dead["outcome"], dead["level"]) == (
            function,
            1,
            "failed",
            "error",
        )
        assert dead["reason"] == reason
        assert events(entries, "job_finished", job) == []


def test_log_level_warning_hides_job_started(
    tmp_path: Path, redis_url: str, key_prefix: str, jobs: SyncClient, make_daemon: MakeDaemon
) -> None:
    config = write_config(tmp_path, redis_url, key_prefix, defaults=FAST_RETRY)
    daemon = make_daemon(config, "--log-format", "json", "--log-level", "warning").start()
    echoed = jobs.enqueue("echo", 1)
    retried = jobs.enqueue("fail_until", 2, max_tries=3)
    for job in (echoed, retried):
        wait_status(job, JobStatus.SUCCEEDED)
    daemon.terminate()
    assert daemon.wait_exit() == EXIT_OK
    entries = json_lines(daemon)
    assert {entry["level"] for entry in entries} <= {"warning", "error", "critical"}
    # the session's Redis runs without AOF: the startup check warns about it (jobd.ops.serverwatch)
    events = [entry.get("event") for entry in entries if entry.get("event") != "redis_setting"]
    assert events == ["job_retry"]
    assert entries[0]["job_id"] == retried.id


def test_the_redis_password_never_reaches_the_logs(
    tmp_path: Path, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    password = "pw-" + uuid.uuid4().hex
    with RedisServer(tmp_path / "redis", appendonly=False, password=password) as server:
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        # debug: the most the daemon ever logs
        daemon = make_daemon(write_config(tmp_path, url, key_prefix), "--log-level", "debug")
        daemon.start()
        daemon.wait_running()
        with SyncClient(url, key_prefix=key_prefix) as client:
            job = client.enqueue("echo", 1)
            wait_status(job, JobStatus.SUCCEEDED)
            assert daemon.get("/metrics")[0] == 200
            server.kill()  # a disconnect is logged, with the address it failed to reach
            daemon.wait_for_log("redis unavailable")
            server.restart()
            daemon.wait_for_log("redis available again")
            job = client.enqueue("echo", 2)
            wait_status(job, JobStatus.SUCCEEDED)
        daemon.terminate()
        assert daemon.wait_exit() == EXIT_OK
    log = daemon.log_text()
    assert f"127.0.0.1:{server.port}" in log
    assert password not in log
    assert "Traceback" not in log
