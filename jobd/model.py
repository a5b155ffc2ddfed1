"""What a job is, as producers see it: its status, its info, and the payload envelope in Redis."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from jobd import crypto
from jobd.errors import (
    DecryptError,
    InvalidJobOption,
    PayloadError,
    PayloadTooLarge,
    SerializationError,
)
from jobd.events import Progress, progress_of
from jobd.serializer import Serializer, find_unserializable

PAYLOAD_VERSION = 1
"""Major version of the payload envelope `{"v": 1, "args": [...], "kwargs": {...}}`; a worker refuses
envelopes of a newer major version. Minor revisions only add fields, which older workers ignore
(the stored payload is never rewritten, so such fields survive retries and dead-letter retries)."""

MAX_PRIORITY = 1000
"""Priorities range over -1000..1000 so that priority and enqueue order fit one exact ZSET score."""
_JOB_ID = re.compile(r"^[^\x00-\x20\x7f]{1,200}$")


def check_job_id(job_id: str, what: str = "job_id") -> str:
    """`job_id` if it is 1-200 printable characters without spaces; InvalidJobOption naming
    `what` otherwise (job groups follow the same rule)."""
    # isprintable() also refuses what the pattern lets through: lone surrogates (not UTF-8), and
    # line and paragraph separators, which would split a log line.
    if isinstance(job_id, str) and _JOB_ID.match(job_id) and job_id.isprintable():
        return job_id
    shown = repr(job_id)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise InvalidJobOption(
        f"{what} {shown} is not valid: use 1-200 printable characters without spaces"
    )


class JobStatus(StrEnum):
    """Where a job stands."""

    SCHEDULED = "scheduled"
    """Deferred, or waiting for a retry."""
    WAITING = "waiting"
    """Waiting for its parents to end (enqueue(..., after=[...]))."""
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """No tries left; the job is in the dead-letter set."""
    ABORTED = "aborted"
    NOT_FOUND = "not_found"
    """Never existed, expired before it started, or its result is no longer kept."""

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ABORTED, JobStatus.NOT_FOUND}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A job's last error: exception type name, message and traceback."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """Everything stored about one job."""

    id: str
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    status: JobStatus
    tries: int
    lost: int
    max_tries: int | None
    """None when the producer left it to the worker's configuration."""
    enqueued_at: datetime | None
    due_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    result: Any
    error: ErrorInfo | None
    group: str | None = None
    """The group it was enqueued with (fair turns, per-group limits)."""
    cost: int = 1
    """What it charges against its function's cost limits."""
    held_by: str | None = None
    """The limit holding it back while it waits (docs/limits.md), else None."""
    progress: Progress | None = None
    """The latest progress it reported (jobd.current_job().progress), else None."""
    parents: tuple[tuple[str, str], ...] = ()
    """(queue, id) of the jobs it waits for or waited for (enqueue(..., after=[...]))."""
    after_failure: str | None = None
    """"fail" or "run" for a job with parents (docs/workflows.md), else None."""
    encryption_key_id: str | None = None
    """The id of the key its arguments are encrypted with (docs/encryption.md), else None. Without
    that key, its args, result, error message and traceback read "encrypted (no key <id>)"."""


def _limit_name(base: str | None) -> str | None:
    """The limit name in a limit's key base (<prefix>:{<queue>}:limit:<name>:[g:<group>:])."""
    if not base or ":limit:" not in base:
        return None
    return base.rsplit(":limit:", 1)[1].split(":", 1)[0]


def encode_payload(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The stored envelope of a call's arguments; errors name the argument (`args[0]`, `kwargs['x']`)."""
    try:
        return serializer.dumps(
            {"v": PAYLOAD_VERSION, "args": list(args), "kwargs": kwargs}, what="arguments"
        )
    except PayloadTooLarge:
        raise
    except SerializationError as error:
        culprit = find_unserializable(list(args), "args") or find_unserializable(kwargs, "kwargs")
        if culprit is None:
            raise
        raise SerializationError(
            f"{culprit} cannot be encoded as JSON; pass only str, int, float, bool, None, lists "
            "and dicts with string keys"
        ) from error


def decode_payload(serializer: Serializer, data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments from a stored envelope; PayloadError says exactly what is wrong."""
    envelope = serializer.loads(data, what="payload")
    if not isinstance(envelope, dict):
        raise PayloadError(f"payload is a JSON {type(envelope).__name__}, expected an object")
    version = envelope.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PayloadError("payload has no format version 'v'")
    if version < 1:
        raise PayloadError(f"payload has an unknown format version {version}")
    if version > PAYLOAD_VERSION:
        raise PayloadError(
            f"payload was written by a newer jobd (format {version}); "
            f"this worker understands format {PAYLOAD_VERSION} and older"
        )
    args = envelope.get("args", [])
    kwargs = envelope.get("kwargs", {})
    if not isinstance(args, list):
        raise PayloadError("payload 'args' is not a list")
    if not isinstance(kwargs, dict):
        raise PayloadError("payload 'kwargs' is not an object")
    return tuple(args), kwargs


def timestamp(value: bytes | str | None) -> datetime | None:
    """A stored millisecond timestamp as an aware UTC datetime."""
    if value is None or value == b"" or value == "":
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


def _number(value: bytes | None) -> int | None:
    return int(value) if value not in (None, b"") else None


def job_info(
    job_id: str,
    fields: dict[bytes, bytes],
    serializer: Serializer,
    keys: crypto.Keys | None = None,
) -> JobInfo:
    """Build a JobInfo from the job hash (HGETALL), decrypting what is encrypted with `keys`.
    Undecodable parts are shown, not raised; so is an encrypted one without its key."""
    function = _text(fields.get(b"function"))
    queue = _text(fields.get(b"queue"))
    seal = crypto.JobSeal(keys, job_id, queue, function)
    payload = fields.get(b"payload", b"")
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    try:
        args, kwargs = decode_payload(serializer, seal.open(payload, crypto.PAYLOAD))
    except DecryptError as error:
        args, kwargs = (error.shown,), {}
    except PayloadError:
        args, kwargs = (payload.decode(errors="replace"),), {}
    result: Any = None
    if b"result" in fields:
        try:
            result = serializer.loads(seal.open(fields[b"result"], crypto.RESULT), what="result")
        except DecryptError as error:
            result = error.shown
        except PayloadError:
            result = fields[b"result"].decode(errors="replace")
    return JobInfo(
        id=job_id,
        function=function,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=_number(fields.get(b"priority")) or 0,
        status=JobStatus(_text(fields.get(b"status")) or "not_found"),
        tries=_number(fields.get(b"tries")) or 0,
        lost=_number(fields.get(b"lost")) or 0,
        max_tries=_number(fields.get(b"max_tries")),
        enqueued_at=timestamp(fields.get(b"enqueued_at")),
        due_at=timestamp(fields.get(b"due_at")),
        started_at=timestamp(fields.get(b"started_at")),
        finished_at=timestamp(fields.get(b"finished_at")),
        expires_at=timestamp(fields.get(b"expires_at")),
        result=result,
        error=decode_error(fields.get(b"error"), seal),
        group=_text(fields.get(b"group")) or None,
        cost=_number(fields.get(b"cost")) or 1,
        held_by=_limit_name(_text(fields.get(b"held")))
        if fields.get(b"status") == b"queued"
        else None,
        progress=_progress(fields.get(b"progress"), seal),
        parents=_parents(fields.get(b"parents")),
        after_failure=_text(fields.get(b"after_failure")) or None,
        encryption_key_id=crypto.envelope_key_id(payload) if crypto.is_encrypted(payload) else None,
    )


def _parents(data: bytes | None) -> tuple[tuple[str, str], ...]:
    if not data:
        return ()
    try:
        return tuple((str(queue), str(job_id)) for queue, job_id in json.loads(data))
    except (ValueError, TypeError):
        return ()


def _progress(data: bytes | None, seal: crypto.JobSeal) -> Progress | None:
    if not data:
        return None
    try:
        return progress_of(json.loads(seal.open(data, crypto.event_part("progress"))))
    except (ValueError, DecryptError):
        return None


def decode_error(data: bytes | None, seal: crypto.JobSeal | None = None) -> ErrorInfo | None:
    """The stored error JSON ({"type", "message", "traceback"}) as ErrorInfo; an encrypted message
    and traceback decrypted with `seal`, or shown as "encrypted (no key …)" without its key."""
    if not data:
        return None
    try:
        raw = json.loads(data)
        message, traceback = str(raw["message"]), str(raw.get("traceback", ""))
        error_type = str(raw["type"])
    except (ValueError, KeyError, TypeError):
        return ErrorInfo("UnknownError", data.decode(errors="replace"))
    return ErrorInfo(
        error_type,
        crypto.readable(seal, message, crypto.ERROR_MESSAGE),
        crypto.readable(seal, traceback, crypto.ERROR_TRACEBACK),
    )


def encode_error(error: ErrorInfo, seal: crypto.JobSeal | None = None) -> bytes:
    """The stored error JSON; with `seal` (a job that came encrypted), its message and traceback
    are encrypted, its type stays readable."""
    message, traceback = error.message, error.traceback
    if seal is not None:
        message = seal.seal_text(message, crypto.ERROR_MESSAGE)
        traceback = seal.seal_text(traceback, crypto.ERROR_TRACEBACK) if traceback else ""
    return json.dumps({"type": error.type, "message": message, "traceback": traceback}).encode()
