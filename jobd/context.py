"""The running job's context: `jobd.current_job()` inside a job function."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jobd.events import check_event_name, check_progress


class JobChannel(Protocol):
    """What a running job asks of its worker (the worker provides it)."""

    async def set_cost(self, cost: int) -> None: ...

    async def emit(self, event: str, data: Any) -> None: ...

    async def progress(self, fraction: float, message: str | None) -> None: ...

    async def parent_results(self) -> dict[str, Any]: ...


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
    channel: JobChannel | None = field(default=None, repr=False, compare=False)
    """The worker's side of the calls below; None outside a worker (tests building a context)."""

    async def set_cost(self, cost: int) -> None:
        """Correct the job's cost once it is known (an LLM reply reports the tokens it used): the
        difference to the cost it was enqueued with is charged or refunded against its
        function's cost limits, in the window of its start. In an `async def` job; a plain
        `def` job can use `asyncio.run_coroutine_threadsafe` with the worker's loop."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise ValueError(f"cost must be an integer >= 0, got {cost!r}")
        await self._worker("set_cost").set_cost(cost)

    async def emit(self, event: str, data: Any = None) -> None:
        """Append an event to this job's stream, which producers read with `job.events()`: a
        short `event` name (1-64 letters, digits, `_ . : -`; not one of jobd's own names such
        as "started" or "progress") and JSON `data`.

        Returns at once: the worker writes what its jobs emitted in the same moment as one batch.
        It holds up to `events.buffer` events; when that is full, emit waits for room, or once a
        write has taken a second (Redis slow or away) drops the event, and readers of the stream
        are told of the gap (docs/events.md). PayloadTooLarge when `data` encodes to more than
        `events.max_data_bytes`; SerializationError when it is not JSON."""
        check_event_name(event)
        await self._worker("emit").emit(event, data)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress, from 0.0 to 1.0 with an optional message: emits a "progress" event
        (`{"fraction": ..., "message": ...}`) and keeps it as the job's latest progress
        (`JobInfo.progress`, `jobd job show`)."""
        fraction, message = check_progress(fraction, message)
        await self._worker("progress").progress(fraction, message)

    async def parent_results(self) -> dict[str, Any]:
        """The results of this job's parents (enqueue(..., after=[...])), by parent id, in the
        order of `after`: a parent that failed maps to a JobFailed and one aborted to a
        JobAborted (not raised; a job sees them only with after_failure="run"), one whose record
        is gone (purged) to a JobNotFound. Parents keep their results until their dependants
        have ended, whatever keep_result says. {} for a job without parents."""
        return await self._worker("parent_results").parent_results()

    def _worker(self, what: str) -> JobChannel:
        if self.channel is None:
            raise RuntimeError(f"{what} needs a running worker")
        return self.channel


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
