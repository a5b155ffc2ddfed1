"""The worker's view of [limits]: what claim.lua must know of each queue's limits, and which limits
a throttled job pauses. The scripts keep the state (see docs/limits.md)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from jobd.config.limits import owner_queue
from jobd.config.settings import DEFAULT_MAX_THROTTLED, LimitSettings, Rate, Settings
from jobd.worker.resilience import RedisCaller
from jobd.worker.runner import ClaimedJob
from jobd.worker.store import Store

DEFAULT_PAUSE = 1.0
"""Seconds a limit pauses when jobd.Throttled gives no retry_after."""


def _window(rate: Rate | None) -> list[int]:
    return [0, 0] if rate is None else [rate.count, round(rate.period * 1000)]


def _definition(limit: LimitSettings) -> list[int]:
    """[rate count, rate ms, cost count, cost ms, concurrency, per group]: claim.lua's form."""
    return [
        *_window(limit.rate),
        *_window(limit.cost),
        limit.concurrency or 0,
        int(limit.per_group),
    ]


def published_limits(settings: Settings) -> dict[str, str]:
    """What workers publish in <prefix>:limits for Client.limit: per used limit, its queue and
    definition as JSON."""
    published = {}
    for name, limit in settings.limits.items():
        queue = owner_queue(settings.functions, name)
        if queue is not None:
            document = {"queue": queue, "definition": _definition(limit)}
            published[name] = json.dumps(document, separators=(",", ":"))
    return published


def limit_specs(settings: Settings) -> dict[str, str]:
    """Per queue with limited functions, the JSON that claim.lua takes as ARGV[8]."""
    specs: dict[str, dict[str, dict[str, list[object]]]] = {}
    for function in settings.functions.values():
        if not function.limits:
            continue
        spec = specs.setdefault(function.queue, {"f": {}, "l": {}})
        spec["f"][function.name] = list(function.limits)
        for name in function.limits:
            spec["l"][name] = list(_definition(settings.limits[name]))
    return {queue: json.dumps(spec, separators=(",", ":")) for queue, spec in specs.items()}


@dataclass(frozen=True, slots=True)
class Pause:
    """What a throttled job pauses: limits as (name, per group), for how long, and how long in
    all a job may be throttled before it is dead-lettered."""

    limits: tuple[tuple[str, bool], ...]
    seconds: float
    max_throttled: float


def pause_for(
    settings: Settings, function: str, named: str | None, retry_after: float | None
) -> Pause:
    """The limits jobd.Throttled pauses: the one it names (if the function uses it), else every
    limit of the function with a rate or a cost. A function without such limits pauses nothing:
    its job just waits `retry_after`."""
    settings_of = settings.function_for(function)
    names = settings_of.limits if settings_of is not None else ()
    limits = [settings.limits[name] for name in names]
    if named is not None and named in names:
        chosen = [settings.limits[named]]
    else:
        chosen = [limit for limit in limits if limit.rate is not None or limit.cost is not None]
    seconds = DEFAULT_PAUSE if retry_after is None else retry_after
    max_throttled = min(
        (limit.max_throttled for limit in chosen or limits), default=DEFAULT_MAX_THROTTLED
    )
    return Pause(tuple((limit.name, limit.per_group) for limit in chosen), seconds, max_throttled)


def cost_limits(settings: Settings, function: str) -> tuple[tuple[str, bool], ...]:
    """(name, per group) of the cost limits of `function`."""
    function_settings = settings.function_for(function)
    names = function_settings.limits if function_settings is not None else ()
    return tuple(
        (name, settings.limits[name].per_group)
        for name in names
        if settings.limits[name].cost is not None
    )


class CostChannel:
    """JobContext.set_cost of one running job: the difference goes to its cost limits."""

    __slots__ = ("_call", "_job", "_limits", "_store")

    def __init__(
        self, store: Store, call: RedisCaller, job: ClaimedJob, limits: Sequence[tuple[str, bool]]
    ) -> None:
        self._store = store
        self._call = call
        self._job = job
        self._limits = limits

    async def set_cost(self, cost: int) -> None:
        await self._call(
            "set cost", functools.partial(self._store.set_cost, self._job, cost, self._limits)
        )


class NoCostLimits:
    """JobContext.set_cost of a job whose function has no cost limit: nothing to correct."""

    async def set_cost(self, cost: int) -> None:
        return None
