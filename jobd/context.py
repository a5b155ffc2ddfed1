"""The running job's context: `jobd.current_job()` inside a job function."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """What a job function can know about itself while it runs."""

    id: str
    function: str
    queue: str
    try_number: int
    """1-based: 1 on the first try, 2 on the first retry …"""
    max_tries: int
    enqueued_at: datetime
    deadline: datetime | None
    """When the per-function timeout cancels the job (None when it has no timeout)."""
    state: dict[str, Any] = field(default_factory=dict)
    """The dict the startup hook filled: shared clients, pools, settings."""


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("jobd_current_job")


def current_job() -> JobContext:
    """Return the context of the job running in this task or thread.

    Raises LookupError outside a job, with a message that says so.
    """
    try:
        return _current.get()
    except LookupError:
        raise LookupError("jobd.current_job() called outside a running job") from None


def set_current_job(context: JobContext) -> contextvars.Token[JobContext]:
    """Bind `context` as the current job (the worker calls this in the job's own task)."""
    return _current.set(context)
