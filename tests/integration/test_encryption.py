"""Encrypted payloads against an in-process worker and a real Redis (docs/encryption.md).

What an attacker who reads Redis sees is checked by dumping every key of the test's prefix
(hashes, streams, lists, sets, strings) and searching it for the plaintext; what a worker does
with a job it cannot decrypt is checked in the dead letters and in the ledger (the function never
ran); rotation, moved ciphertexts, signing, workflows and the readers without keys follow."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import tomli_w

import jobd
from jobd import crypto
from jobd.client import Client, DecryptError, JobFailed
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys
from jobd.signing import sign
from jobd.worker.lifecycle import State, Worker
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for

KEY = crypto.new_key()
OLD_KEY = crypto.new_key()
OTHER_KEY = crypto.new_key()
SIGNING_KEY = "s" * 40
HERE = "tests.integration.test_encryption"
FUNCTIONS = {"leak": {"path": f"{HERE}:leak"}}


def key_id(text: str) -> str:
    return crypto.key_id(crypto.parse_key(text))


async def leak(secret: str, fail_tries: int = 0) -> str:
    """Puts `secret` everywhere a job can: event data, progress, the error message and traceback
    of the tries up to `fail_tries`, and the result."""
    job = jobd.current_job()
    await job.emit("token", {"text": f"event {secret}"})
    await job.progress(0.5, f"progress {secret}")
    if job.try_number <= fail_tries:
        raise RuntimeError(f"message {secret}")
    return f"result {secret}"


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


@pytest.fixture
async def worker(redis_url: str, key_prefix: str, ledger: redis.Redis) -> AsyncIterator[Worker]:
    settings = settings_for(redis_url, key_prefix, functions=FUNCTIONS, encryption_keys=[KEY])
    async with running_worker(settings) as running:
        yield running


@pytest.fixture
async def sealed(redis_url: str, key_prefix: str) -> AsyncIterator[Client]:
    """A producer that encrypts with KEY."""
    async with Client(redis_url, key_prefix=key_prefix, encryption_keys=[KEY]) as client:
        yield client


@pytest.fixture
async def plain(redis_url: str, key_prefix: str) -> AsyncIterator[Client]:
    """A producer without keys (and none from the environment)."""
    async with Client(redis_url, key_prefix=key_prefix, encryption_keys=[]) as client:
        yield client


def everything(admin: redis.Redis, prefix: str) -> bytes:
    """Every key of the prefix with every value it holds, as one blob."""
    parts: list[bytes] = []
    for key in admin.scan_iter(match=f"{prefix}:*", count=1000):
        kind = admin.type(key)
        parts.append(key)
        if kind == b"hash":
            parts += [b"%s=%s" % pair for pair in admin.hgetall(key).items()]
        elif kind == b"stream":
            for entry_id, fields in admin.xrange(key):
                parts += [entry_id, *(b"%s=%s" % pair for pair in fields.items())]
        elif kind == b"list":
            parts += admin.lrange(key, 0, -1)
        elif kind == b"set":
            parts += admin.smembers(key)
        elif kind == b"zset":
            parts += [member for member, _ in admin.zrange(key, 0, -1, withscores=True)]
        elif kind == b"string":
            parts.append(admin.get(key) or b"")
    return b"\n".join(parts)


async def dead_error(admin: redis.Redis, prefix: str, job_id: str) -> dict[str, Any]:
    keys = QueueKeys(prefix, "default")
    await async_wait_until(
        lambda: admin.zscore(keys.dead, job_id) is not None, message=f"{job_id} dead-lettered"
    )
    error = json.loads(admin.hget(keys.job(job_id), "error") or b"{}")
    assert isinstance(error, dict)
    return error


def dead_count(worker: Worker, reason: str, function: str) -> float:
    value = worker.metrics.registry.get_sample_value(
        "jobd_jobs_dead_lettered_total",
        {"queue": "default", "function": function, "reason": reason},
    )
    return value or 0.0


# -- nothing readable in Redis ----------------------------------------------------------------------


async def test_redis_holds_none_of_the_plaintext(
    worker: Worker, sealed: Client, admin: redis.Redis, key_prefix: str
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    args_secret, kwarg_secret = f"arg-{secret}", f"kwarg-{secret}"
    echoed = await sealed.enqueue("echo", args_secret, note=kwarg_secret)
    retried = await sealed.enqueue("leak", secret, fail_tries=1, max_tries=2)
    failed = await sealed.enqueue("leak", f"dead-{secret}", fail_tries=5, max_tries=1)
    seen: list[Any] = []
    async for event in retried.events():  # following: the lifecycle goes to the stream too
        seen.append((event.event, event.data))
    async for event in failed.events():
        seen.append((event.event, event.data))
    assert await echoed.result(timeout=10) == {
        "args": [args_secret],
        "kwargs": {"note": kwarg_secret},
    }
    assert await retried.result(timeout=10) == f"result {secret}"
    with pytest.raises(JobFailed) as error:
        await failed.result(timeout=10)
    # the producer with the key reads it all back
    assert (error.value.error_type, error.value.message) == (
        "RuntimeError",
        f"message dead-{secret}",
    )
    assert f"message dead-{secret}" in error.value.traceback
    assert ("token", {"text": f"event {secret}"}) in seen
    assert ("progress", {"fraction": 0.5, "message": f"progress {secret}"}) in seen
    retrying = [data for name, data in seen if name == "retrying"]
    assert retrying and retrying[0]["message"] == f"message {secret}"
    assert retrying[0]["error"] == "RuntimeError"
    info = await retried.info()
    assert info is not None and info.error is not None  # the first try's error stays as last
    assert (info.error.type, info.error.message) == ("RuntimeError", f"message {secret}")
    assert info.progress is not None and info.progress.message == f"progress {secret}"
    assert info.encryption_key_id == key_id(KEY)

    dump = everything(admin, key_prefix)
    # the secret in arguments, events, progress, results, error messages and tracebacks (whose
    # frames name the function and show its source line)
    for text in (secret, "raise RuntimeError", "in leak", "progress "):
        assert text.encode() not in dump, text
    # what operators need stays readable: functions, queues, states, error types
    for text in (b"leak", b"echo", b"succeeded", b"failed", b"RuntimeError", b"jobd-enc:v1:"):
        assert text in dump, text


async def test_plain_jobs_run_beside_encrypted_ones_and_stay_plain(
    worker: Worker, sealed: Client, plain: Client, admin: redis.Redis, key_prefix: str
) -> None:
    encrypted = await sealed.enqueue("echo", "hidden")
    clear = await plain.enqueue("echo", "visible")
    assert await clear.result(timeout=10) == {"args": ["visible"], "kwargs": {}}
    assert await encrypted.result(timeout=10) == {"args": ["hidden"], "kwargs": {}}
    stored = admin.hgetall(QueueKeys(key_prefix, "default").job(clear.id))
    assert b"visible" in stored[b"payload"] and b"visible" in stored[b"result"]
    info = await clear.info()
    assert info is not None and info.encryption_key_id is None


# -- keys ------------------------------------------------------------------------------------------


async def test_rotation_old_jobs_run_and_read_after_the_new_key_is_first(
    redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    async with Client(redis_url, key_prefix=key_prefix, encryption_keys=[OLD_KEY]) as before:
        old_job = await before.enqueue("echo", "from before")
        settings = settings_for(redis_url, key_prefix, encryption_keys=[KEY, OLD_KEY])
        async with (
            running_worker(settings),
            Client(redis_url, key_prefix=key_prefix, encryption_keys=[KEY, OLD_KEY]) as after,
        ):
            new_job = await after.enqueue("echo", "from after")
            assert await new_job.result(timeout=10) == {"args": ["from after"], "kwargs": {}}
            # the worker answers in the key the job came with: its producer reads it
            assert await old_job.result(timeout=10) == {"args": ["from before"], "kwargs": {}}
            assert await after.job(old_job.id).result(timeout=10) == {
                "args": ["from before"],
                "kwargs": {},
            }
            old_info, new_info = await after.job(old_job.id).info(), await new_job.info()
    assert old_info is not None and new_info is not None
    assert (old_info.encryption_key_id, new_info.encryption_key_id) == (
        key_id(OLD_KEY),
        key_id(KEY),
    )
    assert new_info.args == ("from after",) and old_info.args == ("from before",)


@pytest.mark.parametrize("worker_keys", [[OTHER_KEY], None])
async def test_a_worker_without_the_key_dead_letters_with_decrypt_and_calls_nothing(
    redis_url: str,
    key_prefix: str,
    sealed: Client,
    plain: Client,
    admin: redis.Redis,
    ledger: redis.Redis,
    worker_keys: list[str] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mark = f"{key_prefix}:ran"
    settings = settings_for(redis_url, key_prefix, encryption_keys=worker_keys)
    async with running_worker(settings) as running:
        job = await sealed.enqueue("record", mark)
        error = await dead_error(admin, key_prefix, job.id)
        await async_wait_until(
            lambda: dead_count(running, "decrypt", "record") == 1, message="counted as decrypt"
        )
        after = await plain.enqueue("echo", "plain still runs")
        assert await after.result(timeout=10) == {"args": ["plain still runs"], "kwargs": {}}
        assert running.state == State.RUNNING
    assert error["type"] == "DecryptError"
    assert f"encrypted with key {key_id(KEY)}" in error["message"]
    assert "worker.encryption_keys" in error["message"]
    assert ledger.llen(mark) == 0  # never called
    assert f"DecryptError: the payload of job {job.id} is encrypted with key" in caplog.text
    with pytest.raises(JobFailed) as failed:
        await sealed.job(job.id).result(timeout=10)
    assert failed.value.error_type == "DecryptError"


async def test_producer_keys_from_the_environment_and_from_config(
    worker: Worker,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(crypto.ENCRYPTION_KEYS_ENV, f"{KEY},{OLD_KEY}")
    async with Client(redis_url, key_prefix=key_prefix) as from_environment:
        job = await from_environment.enqueue("echo", 1)
        assert await job.result(timeout=10) == {"args": [1], "kwargs": {}}
        info = await job.info()
        assert info is not None and info.encryption_key_id == key_id(KEY)
    monkeypatch.delenv(crypto.ENCRYPTION_KEYS_ENV)
    monkeypatch.setenv("TEST_FILE_KEY", KEY)
    path = tmp_path / "jobs.toml"
    document = {
        "redis": {"url": redis_url, "key_prefix": key_prefix},
        "worker": {"encryption_keys": ["${TEST_FILE_KEY}"]},
    }
    path.write_text(tomli_w.dumps(document))
    async with Client.from_config(path) as from_config:
        assert from_config.encryption_keys is not None
        assert from_config.encryption_keys.ids == (key_id(KEY),)
        job = await from_config.enqueue("echo", 2)
        assert await job.result(timeout=10) == {"args": [2], "kwargs": {}}
        assert KEY not in repr(from_config)


# -- moved, changed, signed ---------------------------------------------------------------------------


async def test_a_payload_copied_to_another_job_does_not_decrypt(
    worker: Worker, sealed: Client, admin: redis.Redis, ledger: redis.Redis, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    mark = f"{key_prefix}:ran"
    source = await sealed.enqueue("record", f"{mark}-source", delay=3600)
    target = await sealed.enqueue("record", mark, delay=3600)
    admin.hset(keys.job(target.id), "payload", admin.hget(keys.job(source.id), "payload") or b"")
    admin.zadd(keys.scheduled, {target.id: 0})
    admin.rpush(keys.wake, "1")
    error = await dead_error(admin, key_prefix, target.id)
    assert error["type"] == "DecryptError"
    assert f"cannot be decrypted with key {key_id(KEY)}" in error["message"]
    assert "not encrypted for this job" in error["message"]
    assert ledger.llen(mark) == 0 and ledger.llen(f"{mark}-source") == 0


async def test_a_result_copied_to_another_job_does_not_decrypt(
    worker: Worker, sealed: Client, admin: redis.Redis, key_prefix: str
) -> None:
    keys = QueueKeys(key_prefix, "default")
    first, second = await sealed.enqueue("echo", "one"), await sealed.enqueue("echo", "two")
    assert await first.result(timeout=10) == {"args": ["one"], "kwargs": {}}
    assert await second.result(timeout=10) == {"args": ["two"], "kwargs": {}}
    admin.hset(keys.job(second.id), "result", admin.hget(keys.job(first.id), "result") or b"")
    with pytest.raises(DecryptError) as error:
        await second.result(timeout=10)
    assert error.value.key_id == key_id(KEY) and not error.value.missing
    info = await second.info()
    assert info is not None and info.result == f"encrypted (key {key_id(KEY)} does not open it)"


async def test_signing_and_encryption_together(
    redis_url: str,
    key_prefix: str,
    admin: redis.Redis,
    ledger: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SIGNING_KEY", SIGNING_KEY)
    settings = settings_for(
        redis_url,
        key_prefix,
        worker={"signing_key": "${TEST_SIGNING_KEY}"},
        encryption_keys=[KEY],
    )
    keys = QueueKeys(key_prefix, "default")
    mark = f"{key_prefix}:ran"
    async with (
        running_worker(settings),
        Client(
            redis_url, key_prefix=key_prefix, signing_key=SIGNING_KEY, encryption_keys=[KEY]
        ) as both,
    ):
        job = await both.enqueue("echo", "signed and sealed")
        assert await job.result(timeout=10) == {"args": ["signed and sealed"], "kwargs": {}}
        stored = admin.hgetall(keys.job(job.id))
        assert crypto.is_encrypted(stored[b"payload"])
        # the signature covers the stored, encrypted payload
        expected = sign(SIGNING_KEY.encode(), job.id, "default", "echo", stored[b"payload"])
        assert stored[b"signature"] == expected
        # a payload re-encrypted by someone with the encryption key but not the signing key
        forged = await both.enqueue("record", mark, delay=3600)
        payload = crypto.JobSeal(crypto.keys_from([KEY], "k"), forged.id, "default", "record").seal(
            b'{"v":1,"args":["x"],"kwargs":{}}', crypto.PAYLOAD
        )
        admin.hset(keys.job(forged.id), "payload", payload)
        admin.zadd(keys.scheduled, {forged.id: 0})
        admin.rpush(keys.wake, "1")
        error = await dead_error(admin, key_prefix, forged.id)
    assert error["type"] == "SignatureInvalid"
    assert ledger.llen(mark) == 0 and ledger.llen("x") == 0


# -- workflows, and readers without keys -------------------------------------------------------------


async def test_a_workflow_child_reads_its_parents_encrypted_results(
    worker: Worker, sealed: Client, admin: redis.Redis, key_prefix: str
) -> None:
    async with sealed.flow() as flow:
        parent = flow.enqueue("echo", "parent secret")
        child = flow.enqueue("parents_echo", "child secret", after=[parent])
    assert await child.result(timeout=10) == {
        "arg": "child secret",
        "parents": {parent.id: {"args": ["parent secret"], "kwargs": {}}},
    }
    dump = everything(admin, key_prefix)
    assert b"parent secret" not in dump and b"child secret" not in dump


async def test_readers_without_the_key_see_markers_and_never_crash(
    worker: Worker, sealed: Client, plain: Client
) -> None:
    marker = f"encrypted (no key {key_id(KEY)})"
    done = await sealed.enqueue("leak", "x", fail_tries=1, max_tries=2)
    dead = await sealed.enqueue("leak", "y", fail_tries=1, max_tries=1)
    async for _ in done.events():
        pass
    with pytest.raises(JobFailed):
        await dead.result(timeout=10)
    info = await plain.job(done.id).info()
    assert info is not None and info.status == JobStatus.SUCCEEDED
    assert (info.args, info.kwargs, info.result) == ((marker,), {}, marker)
    assert info.error is not None and (info.error.type, info.error.message) == (
        "RuntimeError",
        marker,
    )
    assert info.progress is None and info.encryption_key_id == key_id(KEY)
    with pytest.raises(DecryptError) as error:
        await plain.job(done.id).result(timeout=10)
    assert error.value.shown == marker
    with pytest.raises(JobFailed) as failed:
        await plain.job(dead.id).result(timeout=10)
    assert (failed.value.error_type, failed.value.message) == ("RuntimeError", marker)
    events = [(event.event, event.data) async for event in plain.job(done.id).events()]
    assert ("token", marker) in events and ("progress", marker) in events
    assert [data["message"] for name, data in events if name == "retrying"] == [marker]
    assert events[-1] == ("succeeded", {"try": 2})


async def test_a_payload_near_the_limit_runs_though_its_ciphertext_is_larger(
    redis_url: str, key_prefix: str, ledger: redis.Redis
) -> None:
    """max_payload_bytes bounds the JSON; the claim lets its larger ciphertext through."""
    settings = settings_for(
        redis_url, key_prefix, worker={"max_payload_bytes": 2000}, encryption_keys=[KEY]
    )
    text = "x" * 1900
    async with (
        running_worker(settings),
        Client(
            redis_url, key_prefix=key_prefix, max_payload_bytes=2000, encryption_keys=[KEY]
        ) as client,
    ):
        job = await client.enqueue("echo", text)
        assert await job.result(timeout=10) == {"args": [text], "kwargs": {}}
