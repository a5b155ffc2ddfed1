"""The worker's side of a running job's `jobd.current_job()`: the calls a job makes to its worker
(`set_cost`, `emit`, `progress`, `parent_results`), each served by the part that owns it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from jobd.worker.events import EventWriter
from jobd.worker.runner import ClaimedJob


class CostSetter(Protocol):
    async def set_cost(self, cost: int) -> None: ...


class WorkerChannel:
    """One running job's channel to its worker (jobd.context.JobChannel)."""

    __slots__ = ("_cost", "_job", "_parents", "_writer")

    def __init__(
        self,
        job: ClaimedJob,
        *,
        writer: EventWriter,
        cost: CostSetter,
        parents: Callable[[ClaimedJob], Awaitable[dict[str, Any]]],
    ) -> None:
        self._job = job
        self._writer = writer
        self._cost = cost
        self._parents = parents

    async def set_cost(self, cost: int) -> None:
        await self._cost.set_cost(cost)

    async def emit(self, event: str, data: Any) -> None:
        await self._writer.emit(self._job, event, data)

    async def progress(self, fraction: float, message: str | None) -> None:
        await self._writer.progress(self._job, fraction, message)

    async def parent_results(self) -> dict[str, Any]:
        return await self._parents(self._job)
