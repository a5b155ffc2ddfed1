"""The running job's context: `jobd.current_job()` inside a job function."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class JobChannel(Protocol):
    """What a running job asks of its worker (the worker provides it)."""

    async def set_cost(self, cost: int) -> None: ...


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
        if self.channel is None:
            raise RuntimeError("set_cost needs a running worker")
        await self.channel.set_cost(cost)


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
