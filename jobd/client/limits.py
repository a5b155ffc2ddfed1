"""`Client.limit`: a limit's budget for code outside jobs. A FastAPI handler that calls the rate-
limited service itself shares the budget with the jobs that call it:

    async with client.limit("openai", cost=800):
        reply = await openai.chat(...)

    with sync_client.limit("openai", cost=800):     # SyncClient: the same, blocking
        reply = openai_sync.chat(...)

The limit is the one workers enforce (they publish it in Redis): the block waits until it allows
one start of `cost`, and holds one of its concurrency slots while inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jobd.client.operations import Command, Operation, Pause, ScriptCall, new_job_id
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


def take_limit(
    prefix: str, name: str, *, cost: int, group: str | None, holder: str, hold_ms: int,
    timeout: float | None,
) -> Operation:  # fmt: skip
    """Wait until limit `name` allows one start of `cost` and take it (and a slot, if the limit
    has a concurrency, held by `holder` for `hold_ms`); returns the LimitRef. TimeoutError after
    `timeout` seconds; InvalidJobOption for a limit no worker publishes or a cost above it."""
    ref: LimitRef = yield from find_limit(prefix, name)
    deadline = None if timeout is None else time.monotonic() + timeout
    poll = SLOT_POLL_FIRST
    while True:
        verdict, moment = yield from acquire(prefix, ref, group, holder, cost, hold_ms)
        if verdict == "ok":
            return ref
        if verdict == "never":
            raise InvalidJobOption(
                f"cost {cost} is above what limit {name!r} allows in a whole period"
            )
        if verdict == "at":
            now = yield from _server_ms()
            wait = max(moment - now, 1) / 1000
        else:
            wait, poll = poll, min(poll * 2, SLOT_POLL_MAX)
        if deadline is not None and time.monotonic() + wait > deadline:
            raise TimeoutError(f"limit {name!r} did not allow a start within {timeout:g}s")
        yield Pause(wait)  # until the limit frees: the script said when, or a slot poll


class _Hold:
    """What the async and the sync hold share: the checked options and the operations."""

    def __init__(
        self, prefix: str, name: str, *, cost: int, group: str | None, timeout: float | None,
        hold: float,
    ) -> None:  # fmt: skip
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise InvalidJobOption(f"cost must be an integer >= 1, got {cost!r}")
        if not hold > 0:
            raise InvalidJobOption(f"hold must be > 0 seconds, got {hold!r}")
        self.prefix = prefix
        self.name = name
        self.cost = cost
        self.group = None if group is None else check_job_id(group, "group")
        self.timeout = timeout
        self.hold_ms = round(hold * 1000)
        self.holder = "client:" + new_job_id()
        self.ref: LimitRef | None = None

    def take(self) -> Operation:
        return take_limit(
            self.prefix, self.name, cost=self.cost, group=self.group, holder=self.holder,
            hold_ms=self.hold_ms, timeout=self.timeout,
        )  # fmt: skip

    def renew(self) -> Operation:
        """Extend the slot's expiry (acquire.lua renews a holder that has its slot)."""
        assert self.ref is not None
        return acquire(self.prefix, self.ref, self.group, self.holder, self.cost, self.hold_ms)

    @property
    def holds_slot(self) -> bool:
        return self.ref is not None and self.ref.concurrency > 0

    def release(self) -> Operation:
        assert self.ref is not None
        return release(self.prefix, self.ref, self.group, self.holder)


class LimitHold(_Hold):
    """`async with client.limit(...)`: see the module docstring."""

    def __init__(self, run: Callable[[Operation], Awaitable[Any]], prefix: str, name: str,
                 **options: Any) -> None:  # fmt: skip
        """`run` drives an operation against Redis (Client.run)."""
        super().__init__(prefix, name, **options)
        self._run = run
        self._renewal: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LimitHold:
        self.ref = await self._run(self.take())
        if self.holds_slot:
            self._renewal = asyncio.create_task(self._renew())
        return self

    async def _renew(self) -> None:
        """Extend the slot's expiry every third of `hold` while the block runs."""
        while True:
            await asyncio.sleep(self.hold_ms / 3000)
            with contextlib.suppress(Exception):  # the next renewal tries again
                await self._run(self.renew())

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # fmt: skip
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self.holds_slot:
            await self._run(self.release())


class SyncLimitHold(_Hold):
    """`with client.limit(...)` of the SyncClient: the same, with a thread that renews the slot."""

    def __init__(self, run: Callable[[Operation], Any], prefix: str, name: str,
                 **options: Any) -> None:  # fmt: skip
        """`run` drives an operation against Redis (SyncClient.run)."""
        super().__init__(prefix, name, **options)
        self._run = run
        self._done = threading.Event()
        self._renewal: threading.Thread | None = None

    def __enter__(self) -> SyncLimitHold:
        self.ref = self._run(self.take())
        if self.holds_slot:
            self._renewal = threading.Thread(target=self._renew, name="jobd-limit", daemon=True)
            self._renewal.start()
        return self

    def _renew(self) -> None:
        while not self._done.wait(self.hold_ms / 3000):
            with contextlib.suppress(Exception):  # the next renewal tries again
                self._run(self.renew())

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:  # fmt: skip
        self._done.set()
        if self._renewal is not None:
            self._renewal.join()
        if self.holds_slot:
            self._run(self.release())


def _server_ms() -> Operation:
    """Now on the Redis server's clock, ms."""
    reply = yield Command(("TIME",))
    return int(reply[0]) * 1000 + int(reply[1]) // 1000
