"""`Client.limit`: a limit's budget for code outside jobs. A FastAPI handler that calls the rate-
limited service itself shares the budget with the jobs that call it:

    async with client.limit("openai", cost=800):
        reply = await openai.chat(...)

The limit is the one workers enforce (they publish it in Redis): the block waits until it allows
one start of `cost`, and holds one of its concurrency slots while inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jobd.client.operations import Command, Operation, ScriptCall, new_job_id
from jobd.errors import InvalidJobOption
from jobd.model import check_job_id
from jobd.redis.keys import QueueKeys, RegistryKeys

SLOT_POLL_FIRST = 0.05
SLOT_POLL_MAX = 0.5
"""Waiting for a slot, a holder looks again after 50 ms, doubling up to 0.5 s: nothing in Redis
pushes a freed slot to a client (held jobs are woken by the finish that frees it)."""


@dataclass(frozen=True, slots=True)
class LimitRef:
    """A limit as workers publish it: its queue and claim.lua's definition."""

    name: str
    queue: str
    definition: tuple[int, ...]

    @property
    def concurrency(self) -> int:
        return self.definition[4]

    @property
    def per_group(self) -> bool:
        return bool(self.definition[5])

    def base(self, prefix: str, group: str | None) -> str:
        return QueueKeys(prefix, self.queue).limit(self.name, group if self.per_group else None)


def find_limit(prefix: str, name: str) -> Operation:
    """The published limit `name`; InvalidJobOption if no worker publishes it."""
    raw = yield Command(("HGET", RegistryKeys(prefix).limits, name))
    if raw is None:
        raise InvalidJobOption(
            f"no worker publishes limit {name!r}: name a [limits] table that a function of a "
            "running worker uses (workers publish their limits with their registry entry)"
        )
    document = json.loads(raw)
    return LimitRef(name, str(document["queue"]), tuple(int(n) for n in document["definition"]))


def acquire(prefix: str, ref: LimitRef, group: str | None, holder: str, cost: int,
            hold_ms: int) -> Operation:  # fmt: skip
    """One try: ('ok' | 'slot' | 'at' | 'never', time in ms) as acquire.lua answers."""
    verdict, moment = yield ScriptCall(
        "acquire", [ref.base(prefix, group)], [holder, cost, hold_ms, *ref.definition]
    )
    return verdict.decode() if isinstance(verdict, bytes) else str(verdict), int(moment)


def release(prefix: str, ref: LimitRef, group: str | None, holder: str) -> Operation:
    keys = QueueKeys(prefix, ref.queue)
    yield ScriptCall("release", [ref.base(prefix, group), keys.queued, keys.wake], [holder])


class LimitHold:
    """`async with client.limit(...)`: see the module docstring."""

    def __init__(
        self, run: Callable[[Operation], Awaitable[Any]], prefix: str, name: str, *, cost: int,
        group: str | None, timeout: float | None, hold: float,
    ) -> None:  # fmt: skip
        """`run` drives an operation against Redis (Client.run); `prefix` is the key prefix."""
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise InvalidJobOption(f"cost must be an integer >= 1, got {cost!r}")
        if not hold > 0:
            raise InvalidJobOption(f"hold must be > 0 seconds, got {hold!r}")
        self._run = run
        self._prefix = prefix
        self._name = name
        self._cost = cost
        self._group = None if group is None else check_job_id(group, "group")
        self._timeout = timeout
        self._hold_ms = round(hold * 1000)
        self._holder = "client:" + new_job_id()
        self._ref: LimitRef | None = None
        self._renewal: asyncio.Task[None] | None = None

    async def _try(self) -> tuple[str, int]:
        assert self._ref is not None
        operation = acquire(self._prefix, self._ref, self._group, self._holder,
                            self._cost, self._hold_ms)  # fmt: skip
        result: tuple[str, int] = await self._run(operation)
        return result

    async def __aenter__(self) -> LimitHold:
        self._ref = await self._run(find_limit(self._prefix, self._name))
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        poll = SLOT_POLL_FIRST
        while True:
            verdict, moment = await self._try()
            if verdict == "ok":
                break
            if verdict == "never":
                raise InvalidJobOption(
                    f"cost {self._cost} is above what limit {self._name!r} allows in a whole period"
                )
            if verdict == "at":
                _, now = await self._run(_server_time())
                wait = max(moment - now, 1) / 1000
            else:
                wait, poll = poll, min(poll * 2, SLOT_POLL_MAX)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise TimeoutError(
                    f"limit {self._name!r} did not allow a start within {self._timeout:g}s"
                )
            await asyncio.sleep(wait)  # until the limit frees: the script said when
        if self._ref.concurrency:
            self._renewal = asyncio.create_task(self._renew())
        return self

    async def _renew(self) -> None:
        """Extend the slot's expiry every third of `hold` while the block runs."""
        while True:
            await asyncio.sleep(self._hold_ms / 3000)
            with contextlib.suppress(Exception):
                await self._try()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # fmt: skip
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self._ref is not None and self._ref.concurrency:
            operation = release(self._prefix, self._ref, self._group, self._holder)
            await self._run(operation)


def _server_time() -> Operation:
    """(seconds, milliseconds) on the Redis server's clock."""
    reply = yield Command(("TIME",))
    seconds, micros = int(reply[0]), int(reply[1])
    return seconds, seconds * 1000 + micros // 1000
