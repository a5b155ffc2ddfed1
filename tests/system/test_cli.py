"""The operator commands as a user runs them: `python -m jobd ...` subprocesses against the session
Redis (isolated by key prefix), checked by their output, exit code and the state left in Redis.

Dead letters are mostly made by hand (the state finish.lua leaves), so these tests need no worker;
one test runs the real daemon to show that a retried dead job runs, and one waits for results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from jobd.cli.entry import build_parser
from jobd.client import SyncClient
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys, RegistryKeys
from tests.support.daemon import REPO_ROOT, write_config
from tests.support.redis_server import RedisServer, free_port
from tests.support.wait import wait_until
from tests.system.conftest import MakeDaemon

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78
GUARD = 30.0
"""Deadline of every subprocess and wait: a hang guard, not a timing assertion."""
TEMPLATE = REPO_ROOT / "jobd" / "config" / "templates" / "jobs.toml"


def jobd(*args: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobd ARGS` to its end; no command may ever print a traceback."""
    environ = {key: value for key, value in os.environ.items() if key != "JOBD_CONFIG"}
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")])
    )
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "jobd", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


def server_ms(connection: redis.Redis) -> int:
    seconds, microseconds = connection.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


@pytest.fixture
def connection(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """Queues "high" and "default" consumed; function `echo` goes to "high" by default."""
    return write_config(
        tmp_path,
        redis_url,
        key_prefix,
        worker={"queues": ["high", "default"]},
        functions={
            "echo": {"path": "tests.jobs_for_tests:echo", "queue": "high"},
            "fail": {"path": "tests.jobs_for_tests:fail", "queue": "default"},
        },
    )


@pytest.fixture
def client(redis_url: str, key_prefix: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url, key_prefix=key_prefix) as jobs:
        yield jobs


def make_dead(
    connection: redis.Redis,
    prefix: str,
    queue: str,
    job_id: str,
    *,
    at_ms: int,
    message: str = "boom",
) -> None:
    """Turn a waiting job into a dead letter, as finish.lua does after its last try."""
    keys = QueueKeys(prefix, queue)
    error = {"type": "ValueError", "message": message, "traceback": "Traceback: line 1\n"}
    connection.zrem(keys.queued, job_id)
    connection.zrem(keys.scheduled, job_id)
    connection.hset(
        keys.job(job_id),
        mapping={
            "status": "failed",
            "tries": 3,
            "lost": 1,
            "started_at": at_ms - 5,
            "finished_at": at_ms,
            "token": "w1:1",
            "error": json.dumps(error),
        },
    )
    connection.zadd(keys.dead, {job_id: at_ms})


def publish_worker(
    connection: redis.Redis, prefix: str, worker_id: str, queues: Sequence[str], *, live_ms: int
) -> None:
    """A worker's registry entry, as the worker publishes it (see jobd.redis.keys.RegistryKeys)."""
    keys = RegistryKeys(prefix)
    now = server_ms(connection)
    connection.zadd(keys.index, {worker_id: now + live_ms})
    connection.hset(
        keys.worker(worker_id),
        mapping={
            "host": "box1",
            "pid": 4242,
            "queues": ",".join(queues),
            "concurrency": 10,
            "running": 2,
            "processed": 17,
            "version": "0.1.0",
            "started_at": now - 65_000,
            "heartbeat_at": now - 1_000,
        },
    )


# -- help and usage ---------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_of_every_command_has_help() -> None:
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{parser.prog}: {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), ["status", "enqueue", "job", "dead", "config", "check", "run", "--config"]),
        (("status",), ["--queue", "--json", "--config", "OLDEST"]),
        (("enqueue",), ["--kwargs", "--queue", "--delay", "--job-id", "--wait", "--priority"]),
        (("job", "show"), ["ID", "--queue", "--json"]),
        (("job", "abort"), ["ID", "--queue"]),
        (("dead", "list"), ["--limit", "--queue", "--json"]),
        (("dead", "retry"), ["ID", "--all", "--queue"]),
        (("dead", "purge"), ["ID", "--all", "--queue"]),
        (("config", "show"), ["--config", "***"]),
        (("config", "init"), ["PATH", "jobs.toml"]),
    ],
)
def test_help_explains_each_command(command: tuple[str, ...], expected: list[str]) -> None:
    done = jobd(*command, "--help")
    assert done.returncode == EXIT_OK, done.stderr
    for text in expected:
        assert text in done.stdout, text


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("dead", "retry"), ["give the ids of the dead jobs, or --all"]),
        (("dead", "purge", "x", "--all"), ["not both"]),
        (("enqueue", "echo", '{"a": 1}'), ["JSON array", "--kwargs"]),
        (("enqueue", "echo", "[1"), ["ARGS is not valid JSON"]),
        (("enqueue", "echo", "--kwargs", "[1]"), ["--kwargs must be a JSON object"]),
        (("enqueue", "echo", "--delay", "soon"), ["--delay", "duration"]),
        (("enqueue", "echo", "--job-id", "has space"), ["job_id"]),
        (("enqueue", "echo", "--queue", "{bad}"), ["not a valid queue name"]),
        (("job", "show"), ["ID"]),
        (("status", "--bogus"), ["--bogus"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    config: Path, args: tuple[str, ...], fragments: list[str]
) -> None:
    done = jobd(*args, "--config", str(config))
    one_line_error(done, EXIT_USAGE, *fragments)


def test_operator_commands_need_a_configuration(tmp_path: Path) -> None:
    done = jobd("status", cwd=tmp_path)
    one_line_error(done, EXIT_USAGE, "--config", "JOBD_CONFIG")


# -- configuration and Redis errors -----------------------------------------------------------


def test_invalid_configuration_exits_78_listing_the_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nconcurency = 10\nqueues = []\n[redis]\nurl = 'http://x'\n")
    done = jobd("status", "--config", str(bad))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "worker.concurency" in done.stderr and "redis.url" in done.stderr


def test_unreachable_redis_exits_1_with_one_line_and_no_password(tmp_path: Path) -> None:
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    config = write_config(tmp_path, url, "closed")
    for command in (("status",), ("enqueue", "echo"), ("job", "show", "x")):
        done = jobd(*command, "--config", str(config))
        one_line_error(done, EXIT_FAILURE, "cannot reach Redis at redis://ops:***@127.0.0.1:")
        assert "hunter2" not in done.stderr + done.stdout


def test_refused_credentials_exit_78(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", appendonly=False, password="right") as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        config = write_config(tmp_path, url, "auth")
        for command in (("status",), ("enqueue", "echo")):
            done = jobd(*command, "--config", str(config))
            one_line_error(done, EXIT_CONFIG, "refused the credentials")
            assert "wrong" not in done.stderr.replace("wrong user name", "")


# -- status -----------------------------------------------------------------------------------


def test_status_counts_jobs_per_queue_and_lists_live_workers(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    first = client.enqueue("echo", 1, queue="default")
    client.enqueue("echo", 2, queue="default")
    client.enqueue("echo", 3, queue="default", delay=3600)
    dead = client.enqueue("fail", queue="default")
    make_dead(connection, key_prefix, "default", dead.id, at_ms=server_ms(connection))
    connection.zadd(QueueKeys(key_prefix, "default").running, {"made-up": server_ms(connection)})
    connection.hset(
        QueueKeys(key_prefix, "default").job(first.id), "due_at", server_ms(connection) - 90_000
    )
    publish_worker(connection, key_prefix, "box1:4242:aa", ["high", "extra"], live_ms=60_000)
    publish_worker(connection, key_prefix, "box2:1:gone", ["ghost"], live_ms=-1_000)

    done = jobd("status", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    header = ["QUEUE", "QUEUED", "SCHEDULED", "WAITING", "RUNNING", "DEAD", "OLDEST"]
    assert lines[0].split() == header
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:4]}
    assert list(rows) == ["high", "default", "extra"]  # configured first, then from workers
    assert rows["high"] == ["0", "0", "0", "0", "0", "-"]
    assert rows["default"][:5] == ["2", "1", "0", "1", "1"]
    assert rows["default"][5].startswith("1m")  # the head has waited 90 s: "1m30s"
    assert "1 live worker" in done.stdout
    assert "box1:4242:aa" in done.stdout and "ghost" not in done.stdout

    done = jobd("status", "--config", str(config), "--json", "--queue", "default")
    assert done.returncode == EXIT_OK, done.stderr
    document = json.loads(done.stdout)
    (queue,) = document["queues"]
    assert {key: queue[key] for key in ("queue", "queued", "scheduled", "running", "dead")} == {
        "queue": "default", "queued": 2, "scheduled": 1, "running": 1, "dead": 1,
    }  # fmt: skip
    assert queue["oldest_seconds"] >= 90
    assert document["workers"] == []  # the live worker consumes none of the queues asked for

    document = json.loads(jobd("status", "--config", str(config), "--json").stdout)
    (worker,) = document["workers"]
    assert worker["id"] == "box1:4242:aa"
    assert (worker["host"], worker["pid"], worker["queues"]) == ("box1", 4242, ["high", "extra"])
    assert (worker["concurrency"], worker["running"], worker["processed"]) == (10, 2, 17)


def test_status_without_workers_says_so(config: Path) -> None:
    done = jobd("status", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.rstrip().endswith("no live workers")


def test_status_shows_a_running_daemon(
    config: Path, connection: redis.Redis, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    daemon = make_daemon(config).start().wait_running()
    index = RegistryKeys(key_prefix).index
    wait_until(lambda: connection.zcard(index) == 1, GUARD, interval=0.02, message="registry entry")
    done = jobd("status", "--json", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    (worker,) = json.loads(done.stdout)["workers"]
    assert (worker["pid"], worker["queues"], worker["concurrency"]) == (
        daemon.pid, ["high", "default"], 10,
    )  # fmt: skip
    assert worker["heartbeat_at"] is not None and worker["version"]


def test_cron_list_and_status_show_each_entry_with_its_last_and_next_run(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon
) -> None:
    config = write_config(
        tmp_path, redis_url, key_prefix,
        cron=[
            {"name": "tick", "function": "echo", "schedule": "* * * * * *"},
            {"name": "nightly", "function": "echo", "schedule": "0 3 * * *",
             "timezone": "Europe/Berlin", "enabled": False},
        ],
    )  # fmt: skip
    before = jobd("cron", "list", "--config", str(config))
    assert before.returncode == EXIT_OK, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0].split()[:3] == ["CRON", "SCHEDULE", "TIMEZONE"]
    assert lines[1].startswith("tick ") and "nightly (disabled)" in lines[2]

    make_daemon(config).start().wait_running()

    def last_outcome() -> str | None:
        done = jobd("cron", "list", "--json", "--config", str(config))
        assert done.returncode == EXIT_OK, done.stderr
        tick = json.loads(done.stdout)["cron"][0]
        return str(tick["last_status"]) if tick["last_job"] else None

    wait_until(lambda: last_outcome() == "succeeded", GUARD, interval=0.2, message="a cron run")
    document = json.loads(jobd("cron", "list", "--json", "--config", str(config)).stdout)
    tick, nightly = document["cron"]
    assert tick["last_job"].startswith("cron:tick:") and tick["next_tick"]
    assert (nightly["enabled"], nightly["last_job"], nightly["next_tick"]) == (False, None, None)
    status = jobd("status", "--config", str(config))
    assert status.returncode == EXIT_OK and "CRON" in status.stdout and "succeeded" in status.stdout


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_stores_the_call_with_its_options(config: Path, client: SyncClient) -> None:
    done = jobd(
        "enqueue", "echo", '[1, "a"]', "--kwargs", '{"k": {"x": null}}', "--config", str(config),
        "--delay", "30s", "--priority", "5", "--max-tries", "2",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    job_id = done.stdout.strip()
    info = client.job(job_id, queue="high").info()  # echo's configured queue
    assert info is not None
    assert (info.function, info.args, info.kwargs) == ("echo", (1, "a"), {"k": {"x": None}})
    assert (info.status, info.priority, info.max_tries) == (JobStatus.SCHEDULED, 5, 2)
    assert info.due_at is not None and info.enqueued_at is not None
    assert (info.due_at - info.enqueued_at).total_seconds() == 30

    # a function that is not in [functions] goes to the first of worker.queues
    done = jobd("enqueue", "elsewhere", "--config", str(config), "--job-id", "fixed:1")
    assert (done.returncode, done.stdout, done.stderr) == (EXIT_OK, "fixed:1\n", "")
    assert client.job("fixed:1", queue="high").status() == JobStatus.QUEUED
    again = jobd("enqueue", "elsewhere", "--config", str(config), "--job-id", "fixed:1")
    assert (again.returncode, again.stdout) == (EXIT_OK, "fixed:1\n")
    assert "already exists" in again.stderr

    done = jobd("enqueue", "echo", "--queue", "default", "--config", str(config))
    assert client.job(done.stdout.strip(), queue="default").status() == JobStatus.QUEUED


def test_enqueue_wait_prints_the_result_or_the_error(
    config: Path, client: SyncClient, make_daemon: MakeDaemon
) -> None:
    done = jobd("enqueue", "echo", "[1]", "--wait", "100ms", "--config", str(config))
    one_line_error(done, EXIT_FAILURE, "did not finish within 0.1s", "queued")
    make_daemon(config).start().wait_running()
    done = jobd(
        "enqueue", "echo", '[1, "a"]', "--kwargs", '{"k": 2}', "--wait", "--config", str(config)
    )
    assert done.returncode == EXIT_OK, done.stderr
    job_id, result = done.stdout.splitlines()
    assert json.loads(result) == {"args": [1, "a"], "kwargs": {"k": 2}}
    assert client.job(job_id, queue="high").status() == JobStatus.SUCCEEDED
    done = jobd(
        "enqueue", "fail", '["bad input"]', "--max-tries", "1", "--wait", "20s",
        "--config", str(config),
    )  # fmt: skip
    one_line_error(done, EXIT_FAILURE, "failed: ValueError: bad input")


# -- job show / abort -------------------------------------------------------------------------


def test_job_show_prints_everything_about_a_job(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    job = client.enqueue("fail", "x", queue="default", priority=3, mode="loud")
    make_dead(
        connection, key_prefix, "default", job.id, at_ms=server_ms(connection), message="it broke"
    )
    done = jobd("job", "show", job.id, "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    fields = dict(line.split(None, 1) for line in done.stdout.splitlines() if "  " in line)
    assert fields["status"] == "failed" and fields["function"] == "fail"
    assert (fields["queue"], fields["priority"], fields["tries"]) == ("default", "3", "3 of 5")
    assert (fields["args"], fields["kwargs"]) == ('["x"]', '{"mode": "loud"}')
    assert fields["error"] == "ValueError: it broke"
    assert "traceback:\n  Traceback: line 1" in done.stdout

    done = jobd("job", "show", job.id, "--json", "--queue", "default", "--config", str(config))
    document = json.loads(done.stdout)
    assert (document["id"], document["status"], document["lost"]) == (job.id, "failed", 1)
    assert document["error"]["message"] == "it broke"
    assert document["finished_at"].endswith("+00:00")


def test_job_show_and_abort_of_an_unknown_id_exit_1(config: Path) -> None:
    for action in ("show", "abort"):
        done = jobd("job", action, "nope", "--config", str(config))
        one_line_error(done, EXIT_FAILURE, "job nope not found in queues high, default")


def test_job_abort_stops_a_waiting_job_and_leaves_an_ended_one(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    job = client.enqueue("echo", 1, queue="default")
    done = jobd("job", "abort", job.id, "--config", str(config))
    assert (done.returncode, done.stdout) == (EXIT_OK, f"job {job.id} aborted\n"), done.stderr
    assert job.status() == JobStatus.ABORTED
    ended = client.enqueue("echo", 2, queue="default")
    make_dead(connection, key_prefix, "default", ended.id, at_ms=server_ms(connection))
    done = jobd("job", "abort", ended.id, "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    assert "already ended (failed)" in done.stdout
    assert ended.status() == JobStatus.FAILED


# -- dead letters -----------------------------------------------------------------------------


def test_dead_list_shows_the_newest_first(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    done = jobd("dead", "list", "--config", str(config))
    assert (done.returncode, done.stdout) == (EXIT_OK, "no dead jobs in queues high, default\n")
    now = server_ms(connection)
    for index, queue in enumerate(["high", "default", "high"]):
        job = client.enqueue("fail", queue=queue, job_id=f"dead-{index}")
        make_dead(
            connection, key_prefix, queue, job.id, at_ms=now - 1000 + index, message=f"m{index}"
        )
    done = jobd("dead", "list", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["FAILED", "AT", "QUEUE", "JOB", "FUNCTION", "TRIES", "ERROR"]
    assert [line.split()[3] for line in lines[1:]] == ["dead-2", "dead-1", "dead-0"]
    assert lines[1].split()[-2:] == ["ValueError:", "m2"]

    done = jobd("dead", "list", "--json", "--limit", "2", "--config", str(config))
    document = json.loads(done.stdout)
    assert document["total"] == 3
    assert [job["id"] for job in document["jobs"]] == ["dead-2", "dead-1"]
    assert document["jobs"][1] | {"failed_at": None} == {
        "id": "dead-1", "queue": "default", "function": "fail", "failed_at": None, "tries": 3,
        "lost": 1, "error": {"type": "ValueError", "message": "m1"},
    }  # fmt: skip
    done = jobd("dead", "list", "--limit", "1", "--queue", "high", "--config", str(config))
    assert "dead-2" in done.stdout and "the newest 1 of 2 dead jobs" in done.stdout


def test_dead_retry_puts_jobs_back_at_their_place(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    first, middle, last = (client.enqueue("echo", n, queue="default") for n in range(3))
    for job in (first, last):
        make_dead(connection, key_prefix, "default", job.id, at_ms=server_ms(connection))
        connection.rpush(keys.done(job.id), "1")  # a waiter was told the job ended
    done = jobd("dead", "retry", first.id, last.id, "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.splitlines() == [
        f"retried {first.id} (queue default)", f"retried {last.id} (queue default)",
    ]  # fmt: skip
    assert connection.zcard(keys.dead) == 0
    assert [member.decode() for member in connection.zrange(keys.queued, 0, -1)] == [
        first.id, middle.id, last.id,
    ]  # fmt: skip
    info = first.info()
    assert info is not None
    assert (info.status, info.tries, info.lost, info.finished_at) == (JobStatus.QUEUED, 0, 0, None)
    assert info.error is not None and info.error.message == "boom"  # kept as the last error
    assert not connection.exists(keys.done(first.id))

    # replayed: the ids are no longer dead letters
    again = jobd("dead", "retry", first.id, "--config", str(config))
    one_line_error(
        again, EXIT_FAILURE, f"not in the dead letters of queues high, default: {first.id}"
    )


def test_dead_retry_and_purge_all(
    config: Path, client: SyncClient, connection: redis.Redis, key_prefix: str
) -> None:
    now = server_ms(connection)
    ids = {
        queue: [client.enqueue("fail", queue=queue).id for _ in range(3)]
        for queue in ("high", "default")
    }
    for queue, queue_ids in ids.items():
        for job_id in queue_ids:
            make_dead(connection, key_prefix, queue, job_id, at_ms=now)
    done = jobd("dead", "retry", "--all", "--queue", "high", "--config", str(config))
    assert (done.returncode, done.stdout) == (EXIT_OK, "retried 3 dead jobs of queue high\n")
    assert connection.zcard(QueueKeys(key_prefix, "high").queued) == 3

    high, default = QueueKeys(key_prefix, "high"), QueueKeys(key_prefix, "default")
    connection.rpush(default.done(ids["default"][0]), "1")
    done = jobd("dead", "purge", ids["default"][0], "--config", str(config))
    assert done.stdout == f"purged {ids['default'][0]} (queue default)\n"
    assert not connection.exists(default.job(ids["default"][0]), default.done(ids["default"][0]))
    done = jobd("dead", "purge", "--all", "--config", str(config))
    assert (done.returncode, done.stdout) == (EXIT_OK, "purged 2 dead jobs of queue default\n")
    assert connection.zcard(default.dead) == 0
    assert not any(connection.exists(default.job(job_id)) for job_id in ids["default"])
    assert all(connection.exists(high.job(job_id)) for job_id in ids["high"])  # retried, not dead
    done = jobd("dead", "purge", "--all", "--config", str(config))
    assert done.stdout == "no dead jobs in queues high, default\n"


def test_a_retried_dead_job_runs(
    tmp_path: Path, redis_url: str, key_prefix: str, client: SyncClient, make_daemon: MakeDaemon
) -> None:
    """The operator's case: a job died for a function the workers lacked; once deployed, retry."""
    without = write_config(tmp_path, redis_url, key_prefix, filename="old.toml", functions=None)
    job = client.enqueue("echo", "hello")
    assert make_daemon(without, "--burst").start().wait_exit(GUARD) == EXIT_OK
    info = job.info()
    assert info is not None and info.status == JobStatus.FAILED
    assert info.error is not None and info.error.type == "UnknownFunction"

    fixed = write_config(tmp_path, redis_url, key_prefix, filename="new.toml")
    done = jobd("dead", "retry", job.id, "--config", str(fixed))
    assert done.returncode == EXIT_OK, done.stderr
    assert make_daemon(fixed, "--burst").start().wait_exit(GUARD) == EXIT_OK
    assert job.result(timeout=GUARD) == {"args": ["hello"], "kwargs": {}}


def test_the_worker_runs_under_python_oo(
    tmp_path: Path, redis_url: str, key_prefix: str, client: SyncClient, make_daemon: MakeDaemon
) -> None:
    """Images that set PYTHONOPTIMIZE=2 strip docstrings: the settings module once failed to import
    there (a dataclass's repr of a default called a function defined further down)."""
    config = write_config(tmp_path, redis_url, key_prefix)
    job = client.enqueue("echo", "hello")
    daemon = make_daemon(config, "--burst", env={"PYTHONOPTIMIZE": "2"})
    assert daemon.start().wait_exit(GUARD) == EXIT_OK, daemon.log_text()
    assert job.result(timeout=GUARD) == {"args": ["hello"], "kwargs": {}}
    done = jobd("check", "--config", str(config), PYTHONOPTIMIZE="2")
    assert done.returncode == EXIT_OK, done.stderr


# -- config show / init -----------------------------------------------------------------------


def test_config_show_prints_the_effective_settings_with_secrets_hidden(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(
        f'[redis]\nurl = "redis://ops:hunter2@127.0.0.1:{redis_server.port}/0"\n'
        '[worker]\nqueues = ["${QUEUE_NAME}", "default"]\nconcurrency = "${WORKERS:-8}"\n'
        '[functions.echo]\npath = "tests.jobs_for_tests:echo"\n'
        '[[cron]]\nname = "ping"\nfunction = "echo"\nschedule = "* * * * *"\n'
        'kwargs = { token = "${API_TOKEN}", note = "plain" }\n'
    )
    done = jobd(
        "config", "show", "--config", str(path), QUEUE_NAME="secret-queue", API_TOKEN="s3cr3t-token"
    )
    assert done.returncode == EXIT_OK, done.stderr
    for secret in ("hunter2", "s3cr3t-token", "secret-queue"):
        assert secret not in done.stdout + done.stderr
    shown = tomllib.loads(done.stdout)
    assert shown["redis"]["url"] == f"redis://ops:***@127.0.0.1:{redis_server.port}/0"
    assert shown["worker"]["queues"] == ["***", "default"]
    assert shown["worker"]["concurrency"] == "***"
    assert shown["worker"]["lease_timeout"] == "30s"  # defaults filled in
    assert shown["functions"]["echo"]["queue"] == "***"  # inherited from worker.queues[0]
    assert shown["cron"][0]["kwargs"] == {"token": "***", "note": "plain"}


def test_config_init_writes_the_starter_file_once(tmp_path: Path) -> None:
    done = jobd("config", "init", cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    written = tmp_path / "jobs.toml"
    assert done.stdout.startswith("wrote jobs.toml\n")
    assert written.read_text() == TEMPLATE.read_text()
    shown = jobd("config", "show", "--config", "jobs.toml", cwd=tmp_path)
    assert shown.returncode == EXIT_OK, shown.stderr

    written.write_text("# mine\n")
    done = jobd("config", "init", cwd=tmp_path)
    one_line_error(done, EXIT_FAILURE, "jobs.toml already exists", "remove it or give another path")
    assert written.read_text() == "# mine\n"
    other = tmp_path / "sub" / "other.toml"
    other.parent.mkdir()
    done = jobd("config", "init", str(other), cwd=tmp_path)
    assert done.returncode == EXIT_OK and other.read_text() == TEMPLATE.read_text()
