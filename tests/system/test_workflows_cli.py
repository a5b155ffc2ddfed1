"""Workflows from the command line: `jobd enqueue --after`, a waiting job in `jobd status` and
`jobd job show` with its parents and dependants, and a missing parent named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import write_config
from tests.system.conftest import MakeDaemon
from tests.system.test_cli import jobd


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    return write_config(tmp_path, redis_url, key_prefix)


def labelled(text: str) -> dict[str, list[str]]:
    """`label  value` lines as label -> values (a label may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        label, _, value = line.partition("  ")
        if value:
            found.setdefault(label, []).append(value.strip())
    return found


def enqueue(config: Path, *args: str) -> str:
    done = jobd("enqueue", *args, "--config", str(config))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_job_enqueued_after_another_waits_and_both_show_the_link(
    config: Path, make_daemon: MakeDaemon
) -> None:
    parent = enqueue(config, "echo", '["p"]', "--delay", "1h")
    child = enqueue(config, "echo", '["c"]', "--after", parent, "--after-failure", "run")
    status = json.loads(jobd("status", "--json", "--config", str(config)).stdout)
    (queue,) = [q for q in status["queues"] if q["queue"] == "default"]
    assert (queue["waiting"], queue["scheduled"]) == (1, 1)

    shown = labelled(jobd("job", "show", child, "--config", str(config)).stdout)
    assert shown["status"] == ["waiting"]
    assert shown["after"] == [f"{parent} (default): scheduled"]
    assert shown["after_failure"] == ["run"]
    parent_shown = json.loads(jobd("job", "show", parent, "--json", "--config", str(config)).stdout)
    assert parent_shown["dependants"] == [{"queue": "default", "id": child, "status": "waiting"}]

    # the parent runs now: the child follows
    assert jobd("dead", "list", "--config", str(config)).returncode == 0
    make_daemon(config).start().wait_running()
    done = jobd("job", "abort", parent, "--config", str(config))
    assert done.returncode == 0, done.stderr
    waited = jobd("enqueue", "echo", "--after", child, "--wait", "20s", "--config", str(config))
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout.splitlines()[1]) == {"args": [], "kwargs": {}}


def test_a_missing_parent_is_named_and_nothing_is_enqueued(config: Path) -> None:
    done = jobd("enqueue", "echo", "--after", "ghost", "--config", str(config))
    assert done.returncode == 2  # a usage error: the command names a job that is not there
    assert "after: job ghost not found in queue 'default'" in done.stderr
    assert done.stdout == ""
