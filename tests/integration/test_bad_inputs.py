"""Bad inputs B7-B16, B20 and B21 of docs/reliability.md §5.3 against an in-process worker and a real Redis.

Each case ends with one clear error naming the culprit, the job in the dead letters (or failed) with
its reason and metric, and the same worker still running a follow-up job: no crash, no silent drop.
Payload cases write bytes straight into Redis, as an attacker or a corrupting bug would; client cases
go through `jobd.client`. (B7's garbage, truncated, wrong-shape, newer-format and duplicate-key cases,
B9's unknown function, B10's claim-time size check, B12's unencodable result and B15's wrong
arguments have tests of their own in test_jobs.py and test_scripts.py; this file adds the rest.)
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from jobd.client import Client
from jobd.errors import (
    InvalidJobOption,
    JobFailed,
    PayloadTooLarge,
    SerializationError,
    UnknownFunction,
)
from jobd.model import JobStatus
from jobd.redis.keys import QueueKeys
from jobd.signing import SIGNING_KEY_ENV, sign
from jobd.worker.lifecycle import State, Worker
from tests.support.redis_server import RedisServer
from tests.support.wait import async_wait_until
from tests.support.worker import running_worker, settings_for

KEY = "k" * 40
"""The signing key of the signed-job tests (from the environment, as the configuration demands)."""
HERE = "tests.integration.test_bad_inputs"
EXTRA_FUNCTIONS = {
    name: {"path": f"{HERE}:{name}"}
    for name in ("measure", "big_result", "bad_result", "raise_long", "raise_base", "two_args")
}


# -- job functions of this file -------------------------------------------------------------------


async def measure(value: Any) -> int:
    return len(value)


async def big_result(size: int) -> str:
    return "x" * size


async def bad_result(kind: str) -> Any:
    values: dict[str, Any] = {
        "set": {"a": [1, {2, 3}]},
        "bytes": [b"raw"],
        "datetime": {"when": datetime(2026, 1, 1)},
        "object": object(),
        "nan": {"x": float("nan")},
        "deep": json.loads("[" * 100 + "]" * 100),
    }
    return values[kind]


async def raise_long(size: int) -> None:
    raise ValueError("m" * size)


async def raise_base(kind: str) -> None:
    errors: dict[str, BaseException] = {
        "SystemExit": SystemExit(3),
        "KeyboardInterrupt": KeyboardInterrupt(),
        "GeneratorExit": GeneratorExit(),
        "CancelledError": asyncio.CancelledError(),
    }
    raise errors[kind]


async def two_args(a: int, b: int) -> int:
    return a + b


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as connection:
        yield connection


@pytest.fixture
async def worker(redis_url: str, key_prefix: str) -> AsyncIterator[Worker]:
    settings = settings_for(redis_url, key_prefix, functions=EXTRA_FUNCTIONS)
    async with running_worker(settings) as running:
        yield running


def dead_count(worker: Worker, reason: str, function: str = "echo") -> float:
    value = worker.metrics.registry.get_sample_value(
        "jobd_jobs_dead_lettered_total",
        {"queue": "default", "function": function, "reason": reason},
    )
    return value or 0.0


async def counted(worker: Worker, reason: str, function: str = "echo") -> None:
    """Wait until the worker counted one dead letter for `reason` (counted once the script that
    moved the job has answered, a moment after the dead set shows it)."""
    await async_wait_until(
        lambda: dead_count(worker, reason, function) == 1, message=f"dead letter {reason} counted"
    )


async def still_working(worker: Worker, client: Client) -> None:
    """The same worker, still running, runs a follow-up job."""
    job = await client.enqueue("echo", "after")
    assert await job.result(timeout=10) == {"args": ["after"], "kwargs": {}}
    assert worker.state == State.RUNNING


async def planted(
    client: Client, admin: redis.Redis, key_prefix: str, *, drop: Sequence[str] = (), **fields: Any
) -> str:
    """A job whose stored hash fields are overwritten with `fields` (and those named in `drop`
    deleted), then made due at once: a worker sees only the doctored job."""
    job = await client.enqueue("echo", "placeholder", delay=3600)
    keys = QueueKeys(key_prefix, "default")
    if fields:
        admin.hset(keys.job(job.id), mapping=fields)
    if drop:
        admin.hdel(keys.job(job.id), *drop)
    admin.zadd(keys.scheduled, {job.id: 0})
    admin.rpush(keys.wake, "1")  # wake an idle worker, as enqueue does
    return job.id


async def dead_error(admin: redis.Redis, key_prefix: str, job_id: str | bytes) -> dict[str, Any]:
    """Wait until the job is in the dead letters; its stored error."""
    keys = QueueKeys(key_prefix, "default")
    raw_id = job_id.encode() if isinstance(job_id, str) else job_id
    await async_wait_until(
        lambda: admin.zscore(keys.dead, raw_id) is not None, message=f"{job_id!r} dead-lettered"
    )
    job_key = keys.job_prefix.encode() + raw_id
    assert admin.hget(job_key, "status") == b"failed"
    error = json.loads(admin.hget(job_key, "error") or b"{}")
    assert isinstance(error, dict)
    return error


# -- B7: corrupt payloads (the cases test_jobs.py does not have) ---------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{}", "no format version 'v'"),
        (b'{"v": 0, "args": []}', "unknown format version 0"),
        (b'{"v": "1", "args": []}', "no format version 'v'"),
        (b'{"v": 1, "args": {"a": 1}}', "'args' is not a list"),
        (b'{"v": 1, "args": [], "kwargs": [1]}', "'kwargs' is not an object"),
        (b'"just a string"', "is a JSON str, expected an object"),
    ],
)
async def test_b7_corrupt_payload_is_dead_lettered_as_decode(
    worker: Worker,
    client: Client,
    admin: redis.Redis,
    key_prefix: str,
    payload: bytes,
    reason: str,
) -> None:
    job_id = await planted(client, admin, key_prefix, payload=payload)
    error = await dead_error(admin, key_prefix, job_id)
    assert error["type"] == "PayloadError"
    assert error["message"].startswith("payload cannot be decoded: ")
    assert reason in error["message"]
    await counted(worker, "decode")
    await still_working(worker, client)


async def test_b7_payload_field_missing_from_the_hash(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    job_id = await planted(client, admin, key_prefix, drop=["payload"])
    error = await dead_error(admin, key_prefix, job_id)
    assert error["type"] == "PayloadError"
    await still_working(worker, client)


# -- B8: a pickle written by an attacker ----------------------------------------------------------


class _Pwn:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


async def test_b8_pickle_bomb_is_never_unpickled(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    bomb = pickle.dumps(_Pwn(pwned))
    job_id = await planted(client, admin, key_prefix, payload=bomb)
    error = await dead_error(admin, key_prefix, job_id)
    assert error["type"] == "PayloadError" and "payload cannot be decoded" in error["message"]
    await counted(worker, "decode")
    await still_working(worker, client)
    assert not pwned.exists()


# -- B8 with worker.signing_key: forged, copied, missing signatures -------------------------------


@pytest.fixture
async def signing_worker(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, ledger: redis.Redis
) -> AsyncIterator[Worker]:
    monkeypatch.setenv("TEST_SIGNING_KEY", KEY)
    settings = settings_for(redis_url, key_prefix, worker={"signing_key": "${TEST_SIGNING_KEY}"})
    async with running_worker(settings) as running:
        yield running


@pytest.fixture
async def signer(redis_url: str, key_prefix: str) -> AsyncIterator[Client]:
    async with Client(redis_url, key_prefix=key_prefix, signing_key=KEY) as signing:
        yield signing


async def test_b8_signed_jobs_run(signing_worker: Worker, signer: Client) -> None:
    job = await signer.enqueue("echo", 1, x=[2])
    assert await job.result(timeout=10) == {"args": [1], "kwargs": {"x": [2]}}
    (batch,) = [await signer.enqueue_many([("echo", (3,), {})])]
    assert await batch[0].result(timeout=10) == {"args": [3], "kwargs": {}}


async def test_b8_producer_signs_with_the_key_in_the_environment(
    signing_worker: Worker, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    async with Client(redis_url, key_prefix=key_prefix) as from_environment:
        job = await from_environment.enqueue("echo", 1)
        assert await job.result(timeout=10) == {"args": [1], "kwargs": {}}
        assert "k" * 10 not in repr(from_environment)


FORGERIES = (
    "unsigned",
    "garbage",
    "another key",
    "copied from another job",
    "arguments changed",
    "function changed",
)
"""How an attacker who can write to Redis, but lacks the key, might try."""


def forge(case: str, own: dict[bytes, bytes], other: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The hash fields to overwrite in the genuine job `own`; `other` is another genuine job."""
    if case == "garbage":
        return {b"signature": b"v1:" + b"0" * 64}
    if case == "another key":
        job_id = own[b"id"].decode()
        return {b"signature": sign(b"x" * 40, job_id, "default", "record", own[b"payload"])}
    if case == "copied from another job":
        return {b"payload": other[b"payload"], b"signature": other[b"signature"]}
    if case == "arguments changed":
        return {b"payload": other[b"payload"]}
    assert case == "function changed"
    return {b"function": b"echo"}


@pytest.mark.parametrize("case", FORGERIES)
async def test_b8_forged_or_copied_signature_is_dead_lettered(
    signing_worker: Worker,
    signer: Client,
    admin: redis.Redis,
    ledger: redis.Redis,
    key_prefix: str,
    case: str,
) -> None:
    keys = QueueKeys(key_prefix, "default")
    mark = f"{key_prefix}:ran"
    own = await signer.enqueue("record", mark, delay=3600)
    other = await signer.enqueue("record", f"{mark}-other", delay=3600)
    if case == "unsigned":
        admin.hdel(keys.job(own.id), "signature")
    else:
        forged = forge(case, admin.hgetall(keys.job(own.id)), admin.hgetall(keys.job(other.id)))
        admin.hset(keys.job(own.id), mapping=forged)  # type: ignore[arg-type]
    admin.zadd(keys.scheduled, {own.id: 0})
    admin.rpush(keys.wake, "1")
    error = await dead_error(admin, key_prefix, own.id)
    assert error["type"] == "SignatureInvalid"
    assert error["message"].startswith("signature invalid: ")
    function = "echo" if case == "function changed" else "record"
    await counted(signing_worker, "signature", function)
    job = await signer.enqueue("echo", "after")
    assert await job.result(timeout=10) == {"args": ["after"], "kwargs": {}}
    assert ledger.llen(mark) == 0 and ledger.llen(f"{mark}-other") == 0  # never called


async def test_b8_copy_to_another_id_is_refused(
    signing_worker: Worker, signer: Client, admin: redis.Redis, key_prefix: str
) -> None:
    """A whole signed job copied under a new id (a replay under another name) does not run."""
    keys = QueueKeys(key_prefix, "default")
    genuine = await signer.enqueue("echo", "once", delay=3600)
    fields = admin.hgetall(keys.job(genuine.id))
    fields[b"id"] = b"copy-1"
    admin.hset(keys.job("copy-1"), mapping=fields)
    admin.zadd(keys.queued, {"copy-1": 0})
    admin.rpush(keys.wake, "1")
    error = await dead_error(admin, key_prefix, "copy-1")
    assert error["type"] == "SignatureInvalid"
    assert "id, queue, function and arguments" in error["message"]


async def test_b8_cron_jobs_of_a_signing_worker_are_signed(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, admin: redis.Redis
) -> None:
    monkeypatch.setenv("TEST_SIGNING_KEY", KEY)
    settings = settings_for(
        redis_url,
        key_prefix,
        worker={"signing_key": "${TEST_SIGNING_KEY}"},
        cron=[{"name": "tick", "function": "echo", "schedule": "* * * * * *", "args": [1]}],
    )
    keys = QueueKeys(key_prefix, "default")
    async with running_worker(settings) as worker:

        def succeeded() -> bool:
            return any(
                admin.hget(key, "status") == b"succeeded"
                for key in admin.scan_iter(keys.job("cron:tick:*"))
            )

        await async_wait_until(succeeded, message="a signed cron tick ran")
        assert dead_count(worker, "signature") == 0


# -- B9: unknown function (strict enqueue; the dead-letter case is in test_jobs.py) --------------


async def test_b9_strict_enqueue_refuses_what_no_live_worker_registers(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(UnknownFunction, match=r"queue 'default' registers 'no_such_fn'"):
        await client.enqueue("no_such_fn", strict=True)
    assert await (await client.enqueue("echo", 1, strict=True)).result(timeout=10)
    unknown = await client.enqueue("no_such_fn")
    error = await dead_error(admin, key_prefix, unknown.id)
    assert error["type"] == "UnknownFunction"
    assert f"is not registered on worker {worker.worker_id} (registered: " in error["message"]
    await counted(worker, "unknown_function", "unknown")


# -- B10: oversized arguments ---------------------------------------------------------------------


async def test_b10_client_refuses_2_mib_before_touching_redis(
    client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(PayloadTooLarge, match=r"arguments is \d+ bytes encoded, above the limit"):
        await client.enqueue("echo", "x" * (2 * 1024 * 1024))
    assert list(admin.scan_iter(f"{key_prefix}:*")) == []


async def test_b10_50_mib_body_is_dead_lettered_without_reaching_the_worker(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    job_id = await planted(client, admin, key_prefix, payload=b"x" * 52_428_800)
    error = await dead_error(admin, key_prefix, job_id)
    assert error == {
        "type": "PayloadTooLarge",
        "message": "payload is 52428800 bytes, limit 1048576",
    }
    await counted(worker, "payload_too_large")
    assert (
        worker.metrics.registry.get_sample_value(
            "jobd_jobs_started_total", {"queue": "default", "function": "echo"}
        )
        == 0
    )  # never shipped to the worker
    await still_working(worker, client)


# -- B11: pathological JSON -----------------------------------------------------------------------


def _envelope(args_text: bytes) -> bytes:
    return b'{"v":1,"args":[' + args_text + b'],"kwargs":{}}'


@pytest.mark.parametrize(
    ("args_text", "reason"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested too deeply (more than 64 levels"),
        (b"[" * 63 + b"]" * 63, "nested too deeply (more than 64 levels"),  # 65 with the envelope
        (b"1" * 5000, "holds an integer of more than 4300 digits"),
        (b"NaN", "NaN is not valid JSON"),
        (b"-Infinity", "-Infinity is not valid JSON"),
        (b"1e400", "number 1e400 is out of range"),
    ],
    ids=["10000-deep", "65-deep", "5000-digits", "NaN", "-Infinity", "1e400"],
)
async def test_b11_pathological_json_is_dead_lettered_with_a_specific_reason(
    worker: Worker,
    client: Client,
    admin: redis.Redis,
    key_prefix: str,
    args_text: bytes,
    reason: str,
) -> None:
    job_id = await planted(client, admin, key_prefix, payload=_envelope(args_text))
    error = await dead_error(admin, key_prefix, job_id)
    assert error["type"] == "PayloadError"
    assert reason in error["message"], error
    assert "Traceback" not in json.dumps(error)
    await counted(worker, "decode")
    await still_working(worker, client)


async def test_b11_64_levels_and_many_keys_within_the_limit_run(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    deep = await planted(
        client,
        admin,
        key_prefix,
        function="measure",
        payload=_envelope(b"[" * 62 + b"1" + b"]" * 62),  # 64 levels with the envelope
    )
    keys = {f"k{i}": 0 for i in range(90_000)}  # ~1 MiB of small keys: decoded off the loop
    wide = await client.enqueue("measure", keys)
    assert await wide.result(timeout=30) == 90_000
    assert await client.job(deep).result(timeout=10) == 1


# -- B12: values JSON cannot carry ----------------------------------------------------------------


async def test_b12_client_names_the_argument_that_cannot_be_encoded(
    client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    with pytest.raises(SerializationError, match=r"^kwargs\['when'\] \(type datetime\)") as error:
        await client.enqueue("echo", when=datetime.now())
    assert isinstance(error.value, TypeError)
    with pytest.raises(SerializationError, match=r"^args\[0\]\['s'\] \(type set\)"):
        await client.enqueue("echo", {"s": {1}})
    assert list(admin.scan_iter(f"{key_prefix}:*")) == []


@pytest.mark.parametrize(
    ("kind", "culprit"),
    [
        ("set", "result['a'][1] (type set)"),
        ("bytes", "result[0] (type bytes)"),
        ("datetime", "result['when'] (type datetime)"),
        ("object", "result (type object)"),
        ("nan", "result['x'] (float nan)"),
        ("deep", "result is nested too deeply"),
    ],
)
async def test_b12_unencodable_result_fails_the_job_at_once(
    worker: Worker, client: Client, kind: str, culprit: str
) -> None:
    job = await client.enqueue("bad_result", kind)
    with pytest.raises(JobFailed) as failure:
        await job.result(timeout=10)
    assert failure.value.error_type == "SerializationError"
    assert failure.value.message.startswith(f"result not serializable: {culprit}")
    info = await job.info()
    assert info is not None and info.tries == 1 and info.lost == 0  # failed, not retried or lost


# -- B13: oversized result and error ------------------------------------------------------------


async def test_b13_oversized_result_is_a_failure_naming_the_limit(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    job = await client.enqueue("big_result", 5 * 1024 * 1024)
    with pytest.raises(JobFailed) as failure:
        await job.result(timeout=10)
    assert failure.value.error_type == "ResultTooLarge"
    assert failure.value.message == (
        "result exceeds max_result_bytes: result is 5242882 bytes encoded, above the limit of "
        "1048576 bytes"
    )
    await counted(worker, "result_too_large", "big_result")
    info = await job.info()
    assert info is not None and info.tries == 1
    assert admin.hstrlen(QueueKeys(key_prefix, "default").job(job.id), "result") == 0
    await still_working(worker, client)


async def test_b13_a_1_mb_error_message_is_cut_with_a_marker(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    job = await client.enqueue("raise_long", 1_000_000, max_tries=1)
    with pytest.raises(JobFailed) as failure:
        await job.result(timeout=10)
    assert failure.value.message.endswith(" [… cut …]")
    assert len(failure.value.message) < 5_000
    assert "[… traceback cut …]" in failure.value.traceback
    stored = admin.hstrlen(QueueKeys(key_prefix, "default").job(job.id), "error")
    assert stored < 32_768  # Redis memory stays bounded


# -- B14: hostile ids and names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "job_id",
    ["x" * 10_000, "a\nb", "nul\x00", "with space", "bad\udcff", "line\u2028sep", "", "tab\t"],
    ids=["10KB", "newline", "NUL", "space", "surrogate", "U+2028", "empty", "tab"],
)
async def test_b14_client_refuses_hostile_ids(client: Client, job_id: str) -> None:
    with pytest.raises(InvalidJobOption, match="use 1-200 printable characters without spaces"):
        await client.enqueue("echo", job_id=job_id)
    with pytest.raises(InvalidJobOption):
        client.job(job_id)


async def test_b14_client_refuses_a_queue_name_with_braces(client: Client) -> None:
    with pytest.raises(InvalidJobOption, match=r"queue '\{evil\}' is not a valid queue name"):
        await client.enqueue("echo", queue="{evil}")


async def test_b14_braces_in_a_job_id_stay_inside_the_queue_slot(
    worker: Worker, client: Client
) -> None:
    job = await client.enqueue("echo", 1, job_id="{other}:1")
    assert await job.result(timeout=10) == {"args": [1], "kwargs": {}}


@pytest.mark.parametrize(
    ("raw_id", "fields", "message"),
    [
        (b"\xff\xfe", {}, "job id is not printable UTF-8 text without spaces"),
        (b"a\nb", {}, "job id is not printable UTF-8 text without spaces"),
        (b"has space", {}, "job id is not printable UTF-8 text without spaces"),
        (b"x" * 1000, {}, "job id is not printable UTF-8 text without spaces"),
        (b"y" * 300, {}, "job_id 'yyyy"),
        (b"line\xe2\x80\xa8sep", {}, "is not valid: use 1-200 printable characters"),
        (b"tries-forged", {"tries": "many"}, "field 'tries' is not a count"),
        (b"lost-forged", {"lost": "x"}, "field 'lost' is not an integer"),
        (b"time-forged", {"enqueued_at": "99999999999999999999"}, "'enqueued_at' is not a time"),
    ],
    ids=["not-utf8", "newline", "space", "1000-bytes", "300-chars", "U+2028", "tries", "lost",
         "enqueued_at"],
)  # fmt: skip
async def test_b14_forged_jobs_in_redis_are_dead_lettered_and_reported(
    worker: Worker,
    client: Client,
    admin: redis.Redis,
    key_prefix: str,
    raw_id: bytes,
    fields: dict[str, str],
    message: str,
) -> None:
    keys = QueueKeys(key_prefix, "default")
    stored = {
        "id": raw_id,
        "function": "echo",
        "payload": b'{"v":1,"args":[],"kwargs":{}}',
        "queue": "default",
        "tries": 0,
        "lost": 0,
        "enqueued_at": 1_700_000_000_000,
        "status": "queued",
        **fields,
    }
    admin.hset(keys.job_prefix.encode() + raw_id, mapping=stored)  # type: ignore[arg-type]
    admin.zadd(keys.queued, {raw_id: 0})
    admin.rpush(keys.wake, "1")
    error = await dead_error(admin, key_prefix, raw_id)
    assert error["type"] == "InvalidJob"
    assert error["message"].startswith("cannot run this job: ") and message in error["message"]
    await counted(worker, "invalid_job")
    await still_working(worker, client)
    assert admin.zcard(keys.running) == 0


async def test_b14_forged_ids_at_the_head_of_the_queue_or_on_the_abort_channel(
    redis_url: str, key_prefix: str, client: Client, admin: redis.Redis
) -> None:
    """The worker's other readers of ids (queue figures, abort messages) survive them too."""
    keys = QueueKeys(key_prefix, "default")
    settings = settings_for(redis_url, key_prefix, worker={"concurrency": 1})
    async with running_worker(settings) as worker:
        busy = await client.enqueue("sleep", 30)
        await async_wait_until(lambda: admin.zscore(keys.running, busy.id) is not None)
        admin.hset(keys.job_prefix.encode() + b"\xff", mapping={"due_at": "soon", "status": "x"})
        admin.zadd(keys.queued, {b"\xff": -1})  # at the head, and no free slot to claim it
        await worker.monitor._queue_figures()
        assert (
            worker.metrics.registry.get_sample_value(
                "jobd_queue_jobs", {"queue": "default", "state": "queued"}
            )
            == 1
        )
        admin.publish(keys.aborts, b"\xff\xfe not an id")
        assert await busy.abort(timeout=10) is True
        await still_working(worker, client)


# -- B15: wrong argument shape (extends test_jobs.py's extra-positional case) --------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "text"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2), {"c": 3}, "got an unexpected keyword argument 'c'"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
    ],
)
async def test_b15_wrong_arguments_fail_on_the_first_try(
    worker: Worker, client: Client, args: tuple[int, ...], kwargs: dict[str, int], text: str
) -> None:
    job = await client.enqueue("two_args", *args, max_tries=5, **kwargs)
    with pytest.raises(JobFailed) as failure:
        await job.result(timeout=10)
    assert failure.value.error_type == "TypeError"
    assert failure.value.message == f"arguments do not match two_args(): {text}"
    info = await job.info()
    assert info is not None and info.tries == 1 and info.lost == 0


# -- B16: BaseException subclasses raised by job code ---------------------------------------------


async def test_b16_base_exceptions_fail_the_job_not_the_worker(
    worker: Worker, client: Client
) -> None:
    kinds = ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError")
    jobs = [await client.enqueue("raise_base", kind, max_tries=1) for kind in kinds]
    for kind, job in zip(kinds, jobs, strict=True):
        with pytest.raises(JobFailed) as failure:
            await job.result(timeout=10)
        assert failure.value.error_type == kind
    await still_working(worker, client)


# -- B20: a newer minor format (extra fields) -----------------------------------------------------


async def test_b20_unknown_fields_are_ignored_and_kept(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    payload = b'{"v":1,"args":[2],"kwargs":{},"trace":{"id":"abc"},"minor":7}'
    job_id = await planted(
        client, admin, key_prefix, function="fail_until", payload=payload, future_field="x"
    )
    assert await client.job(job_id).result(timeout=10) == 2  # the second try succeeds
    stored = admin.hgetall(QueueKeys(key_prefix, "default").job(job_id))
    assert stored[b"payload"] == payload  # kept byte for byte across the retry
    assert stored[b"future_field"] == b"x"


# -- B21: duplicate keys --------------------------------------------------------------------------


async def test_b21_duplicate_keys_anywhere_are_refused(
    worker: Worker, client: Client, admin: redis.Redis, key_prefix: str
) -> None:
    job_id = await planted(
        client, admin, key_prefix, payload=b'{"v":1,"args":[{"x":{"a":1,"a":2}}],"kwargs":{}}'
    )
    error = await dead_error(admin, key_prefix, job_id)
    assert error["type"] == "PayloadError" and "duplicate key 'a'" in error["message"]
    await counted(worker, "decode")
    await still_working(worker, client)
    assert await client.job(job_id).status() == JobStatus.FAILED
