"""Reading a job's events (`job.events()`, `job.sse()`), written once without I/O like the other
producer operations: `follow` yields Redis requests, and `Deliver` for the events it read.

A reader first runs follow.lua, which turns the job's stream on (from then on the worker adds
the job's lifecycle events), then blocks on XREAD after the last id it saw. It stops after the
job's end event (succeeded, failed, aborted). Ids run 1, 2, 3 ... without holes, so a hole means
events were dropped (the stream's cap, or a worker whose buffer was full): the reader yields one
"dropped" event in their place, instead of missing them silently."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from jobd import crypto
from jobd.client.operations import (
    RESULT_BLOCK_SECONDS,
    Command,
    Deliver,
    JobRef,
    Operation,
    ScriptCall,
)
from jobd.errors import DecryptError, InvalidJobOption, JobNotFound, PayloadError
from jobd.events import DROPPED, FAILED, RETRYING, JobEvent, event_id
from jobd.redis.keys import QueueKeys
from jobd.serializer import Serializer

ENDED = (b"succeeded", b"failed", b"aborted", b"gone")
"""follow.lua's replies for a job whose stream will get no more events."""
READ_COUNT = 500
"""Events read per XREAD."""
KEEPALIVE_SECONDS = 15.0
"""A quiet SSE stream sends a comment this often, so that proxies keep the connection open."""
KEEPALIVE = b": keep-alive\n\n"


def follow(
    prefix: str,
    ref: JobRef,
    serializer: Serializer,
    after: int,
    keepalive: float | None = None,
    encryption_keys: crypto.Keys | None = None,
) -> Operation:
    """Deliver the job's events after event number `after` (0: all), live, until its end.
    With `keepalive`, deliver None after that many quiet seconds (for SSE comments). Encrypted
    data is decrypted with `encryption_keys`, or delivered as "encrypted (no key …)" without
    its key."""
    keys = QueueKeys(prefix, ref.queue)
    job_key, stream = keys.job(ref.id), keys.events(ref.id)
    reply = yield ScriptCall("follow", [job_key, stream], [ref.id])
    if not reply:
        raise JobNotFound(f"job {ref.id} not found in queue {ref.queue!r}")
    status, newest = reply[0], int(reply[1])
    if after > newest:
        raise InvalidJobOption(
            f"event {event_id(after)} is beyond the last event of job {ref.id} "
            f"({event_id(newest) if newest else 'it has none yet'}): ids come from this job's events"
        )
    position = after
    # without keys, encrypted data is shown as such; with keys, the binding needs the function
    seal = None if encryption_keys is not None else crypto.JobSeal(None, ref.id, ref.queue, "")
    quiet_since = time.monotonic()
    # an ended job's stream is complete: read what is there, without waiting for more
    tail_check = status in ENDED
    wait_ms = round(min(RESULT_BLOCK_SECONDS, keepalive or RESULT_BLOCK_SECONDS) * 1000)
    while True:
        block = () if tail_check else ("BLOCK", max(wait_ms, 1))
        reply = yield Command(
            ("XREAD", "COUNT", READ_COUNT, *block, "STREAMS", stream, f"0-{position}")
        )
        entries = _entries(reply)
        if not entries:
            if tail_check:
                return None
            if keepalive is not None and time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield Deliver([None])
            if not (yield Command(("EXISTS", job_key, stream))):
                raise JobNotFound(
                    f"job {ref.id} of queue {ref.queue!r} is gone: its record expired or an "
                    "operator purged it while it was followed"
                )
            continue
        if seal is None and any(crypto.MARK in f.get(b"d", b"") for _, f in entries):
            # read once, and only for a job with encrypted events
            function = yield Command(("HGET", job_key, "function"))
            seal = crypto.JobSeal(encryption_keys, ref.id, ref.queue, (function or b"").decode())
        delivered: list[JobEvent | None] = []
        for number, fields in entries:
            event = _event(number, fields, serializer, ref.id, seal)
            if number > position + 1:
                dropped = {"count": number - position - 1}
                delivered.append(JobEvent(event_id(number - 1), DROPPED, dropped, event.time))
            delivered.append(event)
            position = number
        quiet_since = time.monotonic()
        yield Deliver(delivered)
        last = delivered[-1]
        # the end, unless more follows it (a dead letter retried: its new tries come after)
        tail_check = last is not None and last.is_end
        if tail_check and len(entries) < READ_COUNT:
            return None


def _entries(reply: Any) -> list[tuple[int, dict[bytes, bytes]]]:
    """(number, fields) of each entry of an XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    streams: Iterable[Any] = reply.values() if isinstance(reply, dict) else (r[1] for r in reply)
    found = []
    for entries in streams:
        if entries and isinstance(entries[0], list) and len(entries) == 1:
            entries = entries[0]  # RESP3: [[entries]]
        for entry_id, fields in entries:
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if not isinstance(fields, dict):
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            found.append((int(text.partition("-")[2]), fields))
    return found


def _event(
    number: int,
    fields: dict[bytes, bytes],
    serializer: Serializer,
    job_id: str,
    seal: crypto.JobSeal | None = None,
) -> JobEvent:
    name = fields.get(b"e", b"").decode(errors="replace")
    try:
        at = datetime.fromtimestamp(int(fields.get(b"t", b"0")) / 1000, UTC)
    except ValueError:
        at = datetime.fromtimestamp(0, UTC)
    raw = fields.get(b"d")
    data: Any = None
    if raw:
        try:
            if seal is not None:
                raw = seal.open(raw, crypto.event_part(name))
            data = serializer.loads(raw, what=f"data of event {number} of job {job_id}")
        except DecryptError as error:
            data = error.shown
        except PayloadError:
            data = raw.decode(errors="replace")
    if (
        name in (FAILED, RETRYING)
        and isinstance(data, dict)
        and isinstance(data.get("message"), str)
    ):
        # the error message of a failed or retrying try, encrypted as the job's error is
        data["message"] = crypto.readable(seal, data["message"], crypto.ERROR_MESSAGE)
    return JobEvent(event_id(number), name, data, at)


def sse_message(event: JobEvent | None) -> bytes:
    """One Server-Sent Events message for `event` (`id:`, `event:`, `data:` lines); a comment
    for None (keep-alive). The data is the event's JSON, on one line."""
    if event is None:
        return KEEPALIVE
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n".encode()
