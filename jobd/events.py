"""Job events as both sides see them: what a running job emits (`jobd.current_job().emit`) and a
producer reads (`job.events()`), the lifecycle events the worker adds, and the event ids.

An event id is the event's place in its job's stream, written as 12 digits ("000000000007"), so
that ids compare in stream order as plain strings. Redis keeps the stream under ids 0-1, 0-2 ...
(see jobd/redis/lua/_lib.lua)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobd.errors import InvalidJobOption

STARTED = "started"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"
PROGRESS = "progress"
DROPPED = "dropped"
"""Not stored: what a reader yields in place of events that were dropped before it read them."""

END_EVENTS = frozenset({SUCCEEDED, FAILED, ABORTED})
LIFECYCLE_EVENTS = frozenset({STARTED, RETRYING}) | END_EVENTS
RESERVED_NAMES = LIFECYCLE_EVENTS | {PROGRESS, DROPPED}
"""Names a job cannot emit itself: the worker writes them (or the reader makes them)."""

ID_DIGITS = 12
MAX_MESSAGE_CHARS = 1_000
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ID = re.compile(r"^(?:0-)?(\d{1,18})$")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job's stream."""

    id: str
    """Its place in the stream: 12 digits, so that ids compare in stream order."""
    event: str
    """"started", "retrying", "succeeded", "failed", "aborted", "progress", "dropped", or a name
    the job emitted."""
    data: Any
    """The JSON data it carries (None when it has none)."""
    time: datetime
    """When it was emitted (UTC; the emitting worker's clock, Redis's for lifecycle events)."""

    @property
    def is_end(self) -> bool:
        """True for the job's end: succeeded, failed or aborted."""
        return self.event in END_EVENTS


@dataclass(frozen=True, slots=True)
class Progress:
    """The latest progress a job reported (`jobd.current_job().progress`)."""

    fraction: float
    """From 0.0 to 1.0."""
    message: str | None = None


def event_id(number: int) -> str:
    """The id of the `number`-th event of a stream (1-based)."""
    return f"{number:0{ID_DIGITS}d}"


def event_number(value: str | None, what: str = "after") -> int:
    """The place in the stream an event id names (0: before the first event); accepts the ids
    this module writes, plain numbers and Redis's "0-N". InvalidJobOption naming `what` else."""
    if value is None or value == "":
        return 0
    match = _ID.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidJobOption(
            f"{what} {shown} is not an event id: use the id of an event of this job "
            f'(digits, such as "{event_id(7)}"), or None for the start of the stream'
        )
    return int(match.group(1))


def check_event_name(name: object) -> str:
    """`name` if a job may emit it; ValueError saying why not otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"event name {name!r} is not valid: use 1-64 letters, digits and _ . : - "
            '(such as "token")'
        )
    if name in RESERVED_NAMES:
        raise ValueError(
            f"event name {name!r} is reserved for jobd's own events "
            f"({', '.join(sorted(RESERVED_NAMES))}); use progress() for progress"
        )
    return name


def check_progress(fraction: object, message: object) -> tuple[float, str | None]:
    """The fraction (0.0 to 1.0) and message of a progress report; ValueError if they are not."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not math.isfinite(fraction)
        or not 0 <= fraction <= 1
    ):
        raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"progress message must be a str or None, got {type(message).__name__}")
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " [… cut …]"
    return float(fraction), message


def progress_of(value: Any) -> Progress | None:
    """The Progress stored as JSON data `{"fraction": f, "message": m}`, None if not one."""
    if not isinstance(value, dict):
        return None
    fraction, message = value.get("fraction"), value.get("message")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    return Progress(float(fraction), message if isinstance(message, str) else None)
