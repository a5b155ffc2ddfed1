"""Cron: when the ticks of a [[cron]] entry fall, and the job id of each tick. Pure: times are
arguments (aware datetimes; ticks are returned in UTC), never read from a clock here, so tests
inject them. The worker's loop that fires the ticks is `jobd.worker.scheduler`; `cron_overview` reads
the entries' state for `jobd status` / `jobd cron list` through the client it is given.

Ticks come from croniter, iterated from a tick (or a bound) in the entry's time zone: never by
adding an interval to the last run, so they do not drift, whenever a worker gets to them.

Daylight saving time (the rule, tested with Europe/Berlin on 2026-03-29 and 2026-10-25):
- Spring forward: local times in the skipped hour do not exist. A schedule that matches one fires
  at the first instant after the gap (a daily "30 2 * * *" runs at 03:00 CEST that day: once, not
  zero times); several such times fall together into that one tick, and the 03:00 tick of the
  schedule, if it has one, is the same tick.
- Fall back: local times in the repeated hour occur twice. A schedule with a fixed hour field
  ("30 2 * * *", "0 */2 * * *", "* 2 * * *") fires once per wall-clock time, at its first
  occurrence. A schedule whose hour field is "*" (every second, every minute, every 15 minutes,
  hourly) follows elapsed time and fires in both passes, as Vixie cron does.
Each tick is an instant, so the two passes of an hourly entry have different job ids.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobd.config.settings import CronSettings, MissedPolicy, Settings
from jobd.redis.keys import QueueKeys

if TYPE_CHECKING:
    import redis.asyncio

JOB_ID_PREFIX = "cron:"
MAX_TICKS = 1000
"""Default bound of `ticks_between`: an every-second entry yields 86 400 ticks a day."""
MAX_COUNTED = 3600
"""Missed ticks counted for one gap at most (counting iterates croniter: ~20 µs a tick)."""
_ONE_SECOND = timedelta(seconds=1)
_BEFORE = timedelta(microseconds=1)


def job_id_for(name: str, tick: datetime) -> str:
    """The id of the job of one tick: `cron:<name>:<epoch seconds>`, the same on every worker."""
    return f"{JOB_ID_PREFIX}{name}:{int(_utc(tick).timestamp())}"


def entry_of(job_id: str) -> str | None:
    """The entry name in a cron job id, or None if `job_id` is not shaped like one."""
    if not job_id.startswith(JOB_ID_PREFIX):
        return None
    name, _, seconds = job_id[len(JOB_ID_PREFIX) :].rpartition(":")
    return name if name and seconds.isdigit() else None


def to_ms(moment: datetime) -> int:
    return round(_utc(moment).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def queue_for(settings: Settings, entry: CronSettings) -> str:
    """The queue an entry's jobs go to: its own, else its function's."""
    if entry.queue is not None:
        return entry.queue
    function = settings.function_for(entry.function)
    return function.queue if function is not None else settings.worker.queues[0]


# -- ticks ------------------------------------------------------------------------------------------


def ticks_between(
    entry: CronSettings, after: datetime, until: datetime, *, limit: int = MAX_TICKS
) -> list[datetime]:
    """The ticks t with after < t <= until, oldest first; the oldest `limit` of them if more."""
    until = _utc(until)
    return list(
        itertools.islice(itertools.takewhile(lambda t: t <= until, _forward(entry, after)), limit)
    )


def latest_ticks(
    entry: CronSettings, after: datetime | None, until: datetime, *, limit: int
) -> list[datetime]:
    """The newest `limit` ticks t with after < t <= until (no lower bound if `after` is None),
    oldest first."""
    backward = _backward(entry, until)
    if after is not None:
        bound = _utc(after)
        backward = itertools.takewhile(lambda t: t > bound, backward)
    ticks = list(itertools.islice(backward, limit))
    ticks.reverse()
    return ticks


def next_tick(entry: CronSettings, after: datetime) -> datetime | None:
    """The first tick after `after`; None if the schedule never fires again (a past year)."""
    return next(_forward(entry, after), None)


def previous_tick(entry: CronSettings, at: datetime) -> datetime | None:
    """The last tick at or before `at`; None if the schedule never fired before it."""
    return next(_backward(entry, at), None)


def start_ticks(entry: CronSettings, last_tick: datetime | None, now: datetime) -> list[datetime]:
    """The ticks a worker fires as it starts, given the last tick any worker fired (None: the entry
    never fired, or its state expired). `skip`: none; ticks fire from now on. `run-once`: the most
    recent tick, if it fell since the last one fired; the others in between are missed. A new entry
    fires on its first tick after now, whatever its policy."""
    if entry.missed is MissedPolicy.SKIP or last_tick is None:
        return []
    return latest_ticks(entry, last_tick, now, limit=1)


def missed_between(
    entry: CronSettings, previous: datetime, tick: datetime, *, limit: int = MAX_COUNTED
) -> int:
    """How many ticks fell strictly between two fired ticks (counted up to `limit`)."""
    return len(ticks_between(entry, previous, _utc(tick) - _BEFORE, limit=limit))


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC, where arithmetic and comparisons are exact (in a zone they are wall-clock:
    adding a second to the second 02:15 of a fall-back night lands in the first pass)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


@functools.lru_cache(maxsize=256)
def _every_hour(schedule: str) -> bool:
    """True when the hour field matches every hour: the schedule follows elapsed time."""
    from croniter import croniter  # here: workers without [[cron]] entries never load it

    return bool(croniter(schedule).expanded[1] == ["*"])


def _repeated(local: datetime) -> bool:
    """True for the second occurrence of a wall-clock time repeated when clocks fall back."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _ticks(entry: CronSettings, start: datetime, forward: bool) -> Iterator[datetime]:
    from zoneinfo import ZoneInfo  # here, like croniter: only workers with entries need them

    from croniter import CroniterBadDateError, croniter

    zone = ZoneInfo(entry.timezone)
    every_hour = _every_hour(entry.schedule)
    iterator = croniter(entry.schedule, start.astimezone(zone))
    while True:
        try:
            value = iterator.get_next(datetime) if forward else iterator.get_prev(datetime)
        except CroniterBadDateError:  # no tick left (the year field is in the past or future)
            return
        tick = value.astimezone(UTC)
        # astimezone sets `fold` from the instant, whatever croniter left in it
        if every_hour or not _repeated(tick.astimezone(zone)):
            yield tick


def _forward(entry: CronSettings, after: datetime) -> Iterator[datetime]:
    """Ticks strictly after `after`, oldest first."""
    after = _utc(after)
    return (tick for tick in _ticks(entry, after, forward=True) if tick > after)


def _backward(entry: CronSettings, at: datetime) -> Iterator[datetime]:
    """Ticks at or before `at`, newest first (croniter's get_prev is strict and whole-second)."""
    at = _utc(at)
    start = at.replace(microsecond=0) + _ONE_SECOND
    return (tick for tick in _ticks(entry, start, forward=False) if tick <= at)


# -- overview ---------------------------------------------------------------------------------------


async def cron_overview(
    client: redis.asyncio.Redis, settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """Every entry, in file order, with its last tick, last job and that job's status (None once
    the job's record expired, after keep_result), and its next tick (None when disabled)."""
    rows: list[dict[str, Any]] = []
    for entry in settings.cron:
        queue = queue_for(settings, entry)
        keys = QueueKeys(settings.redis.key_prefix, queue)
        state = {
            _text(key): _text(value)
            for key, value in (await client.hgetall(keys.cron(entry.name))).items()
        }
        last_tick = state.get("last_tick")
        last_job = state.get("last_job")
        status = None
        if last_job is not None:
            status = await client.hget(keys.job(last_job), "status")
        rows.append(
            {
                "name": entry.name,
                "function": entry.function,
                "schedule": entry.schedule,
                "timezone": entry.timezone,
                "enabled": entry.enabled,
                "missed": entry.missed.value,
                "queue": queue,
                "last_tick": from_ms(int(last_tick)) if last_tick else None,
                "last_job": last_job,
                "last_status": _text(status) if status is not None else None,
                "next_tick": next_tick(entry, now) if entry.enabled else None,
            }
        )
    return rows


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
