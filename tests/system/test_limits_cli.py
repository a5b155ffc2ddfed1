"""`jobd limits`, the limits in `jobd status`, `jobd job show` of a held job, `jobd enqueue
--group --cost` and `jobd check` on [limits], as an operator runs them, against a real Redis
whose limit state a claim made (a worker that took a slot and holds the rest back)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from jobd.client import Client
from jobd.config.loader import load
from jobd.redis.keys import QueueKeys
from jobd.worker.limits import limit_specs
from jobd.worker.store import Store
from tests.support.daemon import write_config
from tests.system.test_cli import jobd

LIMITS = {
    "api": {"concurrency": 1, "rate": "100/m"},
    "tenant": {"concurrency": 1, "per_group": True},
}


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    return write_config(
        tmp_path, redis_url, key_prefix,
        limits=LIMITS,
        functions={
            "echo": {"path": "tests.jobs_for_tests:echo", "limits": ["api"]},
            "record": {"path": "tests.jobs_for_tests:record", "limits": ["tenant"]},
        },
    )  # fmt: skip


def claim_all(config: Path, redis_url: str, key_prefix: str) -> list[str]:
    """Enqueue 3 echo jobs and 2 record jobs of group "acme", then claim as a worker would: one
    of each starts, the others are held. Returns the ids of the held jobs."""

    async def run() -> list[str]:
        async with Client(redis_url, key_prefix=key_prefix) as client:
            for n in range(3):
                await client.enqueue("echo", n)
            for _ in range(2):
                await client.enqueue("record", "k", group="acme")
            store = Store(
                client.redis, prefix=key_prefix, worker_id="host:1:cli", lease_ms=60_000,
                max_payload_bytes=1 << 20, limit_specs=limit_specs(load(config)),
            )  # fmt: skip
            claim = await store.claim("default", 10)
            assert len(claim.jobs) == 2
            return [job_id for job_id, _, _ in claim.held]

    return asyncio.run(run())


def test_jobd_limits_shows_each_limits_use(config: Path, redis_url: str, key_prefix: str) -> None:
    held = claim_all(config, redis_url, key_prefix)
    assert len(held) == 3
    done = jobd("limits", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["LIMIT", "QUEUE", "RUNNING", "STARTS", "COST", "PAUSED", "UNTIL",
                                "WAITING"]  # fmt: skip
    api = lines[1].split()
    assert api[:2] == ["api", "default"]
    assert " ".join(api[2:]) == "1 of 1 1 of 100/m - - 2"
    tenant = lines[2].split()
    assert tenant[:2] == ["tenant", "default"]
    assert tenant[-1] == "1"  # one held job of group acme
    assert lines[3].split()[:2] == ["group", "acme"]

    document = json.loads(jobd("limits", "--config", str(config), "--json").stdout)
    assert [row["limit"] for row in document] == ["api", "tenant"]
    assert document[0]["running"] == 1 and document[0]["waiting"] == 2
    assert document[0]["starts"] == 1
    assert document[1]["groups"] == [
        {"group": "acme", "running": 1, "starts": 0, "spent": 0, "paused_until_ms": None,
         "waiting": 1},
    ]  # fmt: skip

    status = jobd("status", "--config", str(config), "--json")
    assert [row["limit"] for row in json.loads(status.stdout)["limits"]] == ["api", "tenant"]
    assert "1 of 1" in jobd("status", "--config", str(config)).stdout


def test_job_show_says_which_limit_holds_a_job(
    config: Path, redis_url: str, key_prefix: str
) -> None:
    held = claim_all(config, redis_url, key_prefix)
    done = jobd("job", "show", held[0], "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "held by   limit api: waits for it, uncharged" in done.stdout
    document = json.loads(jobd("job", "show", held[0], "--config", str(config), "--json").stdout)
    assert document["held_by"] == "api" and document["tries"] == 0


def test_jobd_enqueue_takes_group_and_cost(config: Path, redis_url: str, key_prefix: str) -> None:
    done = jobd("enqueue", "echo", "[1]", "--group", "acme", "--cost", "7", "--config", str(config))
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    fields = redis.Redis.from_url(redis_url).hmget(
        QueueKeys(key_prefix, "default").job(job_id), "group", "cost"
    )
    assert fields == [b"acme", b"7"]
    bad = jobd("enqueue", "echo", "--cost", "0", "--config", str(config))
    assert bad.returncode == 2 and "--cost" in bad.stderr


def test_jobd_check_names_limit_mistakes(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    path = write_config(
        tmp_path, redis_url, key_prefix,
        limits={"api": {"rate": "100/min"}, "spare": {"rate": "1/s"}},
        functions={"echo": {"path": "tests.jobs_for_tests:echo", "limits": ["api", "apx"]}},
    )  # fmt: skip
    done = jobd("check", "--config", str(path))
    assert done.returncode == 78
    assert "limits.api.rate: '100/min' is not a rate" in done.stderr
    assert "functions.echo.limits[1]: unknown limit 'apx', not in [limits]" in done.stderr
    fixed = write_config(
        tmp_path, redis_url, key_prefix, filename="fixed.toml",
        limits={"api": {"rate": "100/m"}, "spare": {"rate": "1/s"}},
        functions={"echo": {"path": "tests.jobs_for_tests:echo", "limits": ["api"]}},
    )  # fmt: skip
    ok = jobd("check", "--config", str(fixed))
    assert ok.returncode == 0, ok.stderr
    assert "limits.spare: no function names this limit" in ok.stderr + ok.stdout
