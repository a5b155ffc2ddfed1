"""parse_duration and format_duration: accepted forms, exact error messages, exact round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobd.config.durations import format_duration, parse_duration

FORMAT = 'expected a duration like "250ms", "30s", "5m", "1h", "2d" or a number of seconds'


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("30", 30.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
        (" 30s ", 30.0),
    ],
)
def test_parses_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("number", "seconds"), [(30, 30.0), (1.5, 1.5), (0, 0.0), (-0.0, 0.0)])
def test_parses_numbers(number: float, seconds: float) -> None:
    result = parse_duration(number)
    assert result == seconds
    assert isinstance(result, float)
    assert math.copysign(1.0, result) == 1.0


@pytest.mark.parametrize(
    "text", ["30 seconds", "", "ms", "1e3", "5m5m", "30m1h", "1h 30m", "1.5.5s", "5x", "s30"]
)
def test_rejects_other_strings_naming_the_accepted_format(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"{FORMAT}, got {text!r}"


def test_message_for_the_example_in_the_docs() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("30 seconds")
    assert str(caught.value) == (
        'expected a duration like "250ms", "30s", "5m", "1h", "2d" or a number of seconds, '
        "got '30 seconds'"
    )


@pytest.mark.parametrize("value", ["-5s", "-1", -1, -0.5])
def test_rejects_negative_durations(value: str | float) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"duration must not be negative, got {value!r}"


@pytest.mark.parametrize("value", [True, False])
def test_rejects_booleans(value: bool) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"{FORMAT}, got {value!r}"


def test_rejects_nan_and_infinity() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(math.nan)
    with pytest.raises(ValueError, match="too large"):
        parse_duration(math.inf)
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "d")
    with pytest.raises(ValueError, match="too large"):
        parse_duration(10**400)


def test_rejects_other_types() -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration([30])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (5400, "90m"),
        (3600, "1h"),
        (172800, "2d"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (86401, "1d1s"),
        (1e-7, "0.0000001s"),
    ],
)
def test_formats_the_shortest_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_format_rejects_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(seconds)


@settings(derandomize=True, max_examples=300, database=None)
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_round_trips_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@settings(derandomize=True, max_examples=200, database=None)
@given(st.integers(min_value=0, max_value=10**12))
def test_format_of_whole_milliseconds_round_trips(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == seconds
