"""Tick computation of cron entries with injected times: every second, every minute, the seconds
field, DST in Europe/Berlin (spring forward 2026-03-29, fall back 2026-10-25), the missed policies
after a gap, and job ids."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobd.config import loader as config
from jobd.config.settings import CronSettings, MissedPolicy
from jobd.errors import ConfigError
from jobd.model import check_job_id
from jobd.worker.cron import (
    entry_of,
    job_id_for,
    latest_ticks,
    missed_between,
    next_tick,
    previous_tick,
    start_ticks,
    ticks_between,
)

BERLIN = ZoneInfo("Europe/Berlin")


def entry(schedule: str, timezone: str = "UTC", **options: object) -> CronSettings:
    return CronSettings(name="e", function="f", schedule=schedule, timezone=timezone, **options)  # type: ignore[arg-type]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def berlin(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN, fold=fold)


def local_times(ticks: list[datetime]) -> list[str]:
    return [tick.astimezone(BERLIN).strftime("%H:%M%z") for tick in ticks]


def one_day(schedule: str, day: int, month: int) -> list[datetime]:
    """The ticks of a Berlin entry during one local calendar day of 2026."""
    start = berlin(2026, month, day) - timedelta(microseconds=1)
    end = berlin(2026, month, day + 1) - timedelta(microseconds=1)
    return ticks_between(entry(schedule, "Europe/Berlin"), start, end, limit=10_000)


# -- plain schedules ------------------------------------------------------------------------------


def test_every_second_ticks_after_an_injected_time() -> None:
    every_second = entry("* * * * * *")
    after = utc(2026, 5, 1, 10, 0, 0) + timedelta(milliseconds=500)
    ticks = ticks_between(every_second, after, utc(2026, 5, 1, 10, 0, 4))
    assert ticks == [utc(2026, 5, 1, 10, 0, s) for s in (1, 2, 3, 4)]
    assert all(tick.tzinfo is UTC for tick in ticks)


def test_bounds_are_exclusive_after_and_inclusive_until() -> None:
    every_second = entry("* * * * * *")
    ticks = ticks_between(every_second, utc(2026, 5, 1, 10, 0, 0), utc(2026, 5, 1, 10, 0, 2))
    assert ticks == [utc(2026, 5, 1, 10, 0, 1), utc(2026, 5, 1, 10, 0, 2)]
    assert ticks_between(every_second, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10)) == []


def test_every_minute_for_an_hour_without_drift() -> None:
    ticks = ticks_between(entry("* * * * *"), utc(2026, 5, 1, 10), utc(2026, 5, 1, 11))
    assert len(ticks) == 60
    assert ticks[0] == utc(2026, 5, 1, 10, 1) and ticks[-1] == utc(2026, 5, 1, 11)
    assert all(tick.second == 0 and tick.microsecond == 0 for tick in ticks)


def test_the_count_is_bounded() -> None:
    ticks = ticks_between(entry("* * * * * *"), utc(2026, 5, 1), utc(2026, 5, 2), limit=5)
    assert ticks == [utc(2026, 5, 1, 0, 0, s) for s in range(1, 6)]


def test_seconds_field_is_the_sixth() -> None:
    at_30 = entry("0 3 * * * 30")
    assert next_tick(at_30, utc(2026, 5, 1)) == utc(2026, 5, 1, 3, 0, 30)
    every_10s = entry("* * * * * */10")
    assert ticks_between(every_10s, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 1)) == [
        utc(2026, 5, 1, 10, 0, s) for s in (10, 20, 30, 40, 50)
    ] + [utc(2026, 5, 1, 10, 1)]


def test_next_and_previous_tick() -> None:
    hourly = entry("0 * * * *")
    at = utc(2026, 5, 1, 10, 30)
    assert next_tick(hourly, at) == utc(2026, 5, 1, 11)
    assert previous_tick(hourly, at) == utc(2026, 5, 1, 10)
    assert previous_tick(hourly, utc(2026, 5, 1, 10)) == utc(2026, 5, 1, 10), "inclusive"
    assert next_tick(hourly, utc(2026, 5, 1, 10)) == utc(2026, 5, 1, 11), "exclusive"


def test_latest_ticks_are_the_newest_oldest_first() -> None:
    every_minute = entry("* * * * *")
    ticks = latest_ticks(every_minute, utc(2026, 5, 1, 9), utc(2026, 5, 1, 10, 0, 30), limit=3)
    assert ticks == [utc(2026, 5, 1, 9, 58), utc(2026, 5, 1, 9, 59), utc(2026, 5, 1, 10)]
    assert (
        latest_ticks(every_minute, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 0, 30), limit=3) == []
    )


def test_a_schedule_in_another_zone_is_read_there() -> None:
    nightly = entry("0 3 * * *", "Europe/Berlin")
    assert next_tick(nightly, utc(2026, 7, 1)) == utc(2026, 7, 1, 1)  # 03:00 CEST
    assert next_tick(nightly, utc(2026, 1, 10)) == utc(2026, 1, 10, 2)  # 03:00 CET


def test_a_schedule_that_never_fires_again_has_no_next_tick() -> None:
    past_year = entry("0 0 1 1 * 0 2020")
    assert next_tick(past_year, utc(2026, 5, 1)) is None
    assert previous_tick(past_year, utc(2026, 5, 1)) == utc(2020, 1, 1)


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_tick(entry("* * * * *"), datetime(2026, 5, 1))


# -- daylight saving time in Europe/Berlin -------------------------------------------------------


def test_spring_forward_daily_job_in_the_gap_fires_once_at_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    assert local_times(one_day("30 2 * * *", 29, 3)) == ["03:00+0200"]
    assert local_times(one_day("30 2 * * *", 28, 3)) == ["02:30+0100"]
    assert local_times(one_day("30 2 * * *", 30, 3)) == ["02:30+0200"]


def test_spring_forward_interval_schedules_follow_elapsed_time() -> None:
    hourly = one_day("0 * * * *", 29, 3)
    assert len(hourly) == 23, "the day has 23 hours"
    assert local_times(hourly)[1:3] == ["01:00+0100", "03:00+0200"]
    half_hourly = local_times(one_day("*/30 * * * *", 29, 3))
    assert half_hourly[2:5] == ["01:00+0100", "01:30+0100", "03:00+0200"], "gap times collapse"
    assert len(half_hourly) == 46
    seconds = ticks_between(
        entry("* * * * * *", "Europe/Berlin"),
        berlin(2026, 3, 29, 1, 59, 58),
        berlin(2026, 3, 29, 3, 0, 2),
    )
    # 01:59:59 CET, then 03:00:00, 03:00:01, 03:00:02 CEST: one second apart each
    assert [b - a for a, b in itertools.pairwise(seconds)] == [timedelta(seconds=1)] * 3


def test_fall_back_daily_job_in_the_repeated_hour_fires_once() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    ticks = one_day("30 2 * * *", 25, 10)
    assert local_times(ticks) == ["02:30+0200"], "the first occurrence only"
    assert ticks == [utc(2026, 10, 25, 0, 30)]
    assert local_times(one_day("*/30 2 * * *", 25, 10)) == ["02:00+0200", "02:30+0200"]


def test_fall_back_interval_schedules_run_in_both_passes() -> None:
    hourly = one_day("0 * * * *", 25, 10)
    assert len(hourly) == 25, "the day has 25 hours"
    assert local_times(hourly)[2:4] == ["02:00+0200", "02:00+0100"]
    every_minute = one_day("* * * * *", 25, 10)
    assert len(every_minute) == 25 * 60
    assert len({job_id_for("e", tick) for tick in hourly}) == 25, "distinct ids in both passes"


def test_fall_back_from_inside_the_repeated_hour() -> None:
    daily = entry("30 2 * * *", "Europe/Berlin")
    second_pass = berlin(2026, 10, 25, 2, 15, fold=1)
    assert next_tick(daily, second_pass) == berlin(2026, 10, 26, 2, 30)
    assert previous_tick(daily, berlin(2026, 10, 25, 2, 45, fold=1)) == utc(2026, 10, 25, 0, 30)
    # (a datetime in a repeated hour never equals one of another zone: compare in UTC)
    hourly = entry("0 * * * *", "Europe/Berlin")
    assert next_tick(hourly, berlin(2026, 10, 25, 2, 30)) == utc(2026, 10, 25, 1)  # 02:00 CET
    assert previous_tick(hourly, second_pass) == utc(2026, 10, 25, 1)


# -- after a gap: the missed policies -------------------------------------------------------------


def test_skip_fires_nothing_at_start() -> None:
    every_minute = entry("* * * * *", missed=MissedPolicy.SKIP)
    assert start_ticks(every_minute, utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 5, 30)) == []


def test_run_once_fires_the_most_recent_tick_after_a_gap() -> None:
    every_minute = entry("* * * * *", missed=MissedPolicy.RUN_ONCE)
    last, now = utc(2026, 5, 1, 10), utc(2026, 5, 1, 10, 5, 30)
    assert start_ticks(every_minute, last, now) == [utc(2026, 5, 1, 10, 5)]
    assert missed_between(every_minute, last, utc(2026, 5, 1, 10, 5)) == 4
    nightly = entry("0 3 * * *", "Europe/Berlin", missed=MissedPolicy.RUN_ONCE)
    down_for_three_days = start_ticks(nightly, utc(2026, 5, 1, 1), utc(2026, 5, 4, 12))
    assert down_for_three_days == [utc(2026, 5, 4, 1)]


def test_run_once_without_a_gap_or_without_history_fires_nothing() -> None:
    every_minute = entry("* * * * *", missed=MissedPolicy.RUN_ONCE)
    now = utc(2026, 5, 1, 10, 5, 30)
    assert start_ticks(every_minute, utc(2026, 5, 1, 10, 5), now) == [], "last tick fired"
    assert start_ticks(every_minute, None, now) == [], "a new entry waits for its next tick"


def test_missed_ticks_are_counted_up_to_a_bound() -> None:
    every_second = entry("* * * * * *")
    assert missed_between(every_second, utc(2026, 5, 1), utc(2026, 5, 1, 0, 0, 1)) == 0
    assert missed_between(every_second, utc(2026, 5, 1), utc(2026, 5, 2)) == 3600


# -- job ids ----------------------------------------------------------------------------------------


def test_job_ids_are_deterministic_and_valid() -> None:
    tick = utc(2026, 3, 29, 1)
    assert job_id_for("nightly-cleanup", tick) == "cron:nightly-cleanup:1774746000"
    assert job_id_for("nightly-cleanup", tick.astimezone(BERLIN)) == job_id_for(
        "nightly-cleanup", tick
    )
    assert check_job_id(job_id_for("x" * 100, tick))
    assert entry_of("cron:nightly-cleanup:1774746000") == "nightly-cleanup"
    assert entry_of("cron:a:b:1774746000") == "a:b"
    assert entry_of("cron:nightly") is None
    assert entry_of("other:nightly:1") is None


# -- configuration --------------------------------------------------------------------------------


def test_cron_priority_is_in_the_enqueue_range() -> None:
    text = (
        '[functions.f]\npath = "a:b"\n'
        '[[cron]]\nname = "x"\nfunction = "f"\nschedule = "* * * * *"\npriority = 5000\n'
    )
    with pytest.raises(ConfigError) as error:
        config.loads(text, source="jobs.toml")
    assert "jobs.toml: cron[0].priority: must be between -1000 and 1000, got 5000" in str(
        error.value
    )
