"""Durations as people write them: "250ms", "30s", "5m", "1h", "2d", "1h30m" or a number of seconds.

Pure functions only; every duration inside jobd is a float number of seconds.
"""

from __future__ import annotations

import math
import re

ACCEPTED_FORMAT = 'expected a duration like "250ms", "30s", "5m", "1h", "2d" or a number of seconds'

# Largest unit first: a compound duration lists its units in this order, each at most once.
UNIT_MILLISECONDS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_UNIT_ORDER = tuple(UNIT_MILLISECONDS)

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(_NUMBER)
_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)")

# Exact values are fractions of whole numbers, `numerator / 10**places` milliseconds: integer
# arithmetic keeps "250ms" exactly a quarter second, and int / int rounds once, correctly, to the
# nearest float. (decimal would do the same for 0.3 MiB more in every worker.)
Exact = tuple[int, int]


def _exact(number: str, scale: int = 1) -> Exact:
    """`number` (digits with an optional point and exponent) times `scale` milliseconds."""
    mantissa, _, exponent = number.partition("e")
    whole, _, fraction = mantissa.partition(".")
    places = len(fraction) - int(exponent or 0)
    numerator = int(whole + fraction) * scale
    if places < 0:
        return numerator * 10**-places, 0
    return numerator, places


def _add(a: Exact, b: Exact) -> Exact:
    places = max(a[1], b[1])
    return a[0] * 10 ** (places - a[1]) + b[0] * 10 ** (places - b[1]), places


def _seconds(value: Exact) -> float:
    denominator: int = 1000 * 10 ** value[1]
    try:
        return value[0] / denominator
    except OverflowError:
        return math.inf


def parse_duration(value: str | int | float) -> float:
    """Return `value` in seconds: a non-negative number, or a string such as "1.5s" or "1h30m".

    Raises ValueError, with the accepted format in the message, for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{ACCEPTED_FORMAT}, got {value!r}")
    if isinstance(value, str):
        seconds = _parse_text(value)
    else:
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"duration {value!r} is too large") from None
    if math.isnan(seconds):
        raise ValueError(f"{ACCEPTED_FORMAT}, got {value!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    if math.isinf(seconds):
        raise ValueError(f"duration {value!r} is too large")
    return seconds + 0.0  # turns -0.0 into 0.0


def _parse_text(text: str) -> float:
    """Parse the string form; the sign is rejected here so that "-5s" gets its own message."""
    stripped = text.strip()
    if stripped.startswith("-") and _parses(stripped[1:]):
        raise ValueError(f"duration must not be negative, got {text!r}")
    total = _exact_text(stripped)
    if total is None:
        raise ValueError(f"{ACCEPTED_FORMAT}, got {text!r}")
    # One rounding from the exact sum, so "250ms" is exactly 0.25 and formats round-trip.
    return _seconds(total)


def _parses(text: str) -> bool:
    return _exact_text(text) is not None


def _exact_text(text: str) -> Exact | None:
    """The exact duration that `text` denotes, or None when it is not a duration."""
    if _PLAIN_NUMBER.fullmatch(text):
        return _exact(text, UNIT_MILLISECONDS["s"])
    total: Exact = (0, 0)
    position = 0
    previous_unit = -1
    for match in _PART.finditer(text):
        unit_index = _UNIT_ORDER.index(match.group(2))
        if match.start() != position or unit_index <= previous_unit:
            return None
        total = _add(total, _exact(match.group(1), UNIT_MILLISECONDS[match.group(2)]))
        position = match.end()
        previous_unit = unit_index
    if position == 0 or position != len(text):
        return None
    return total


def format_duration(seconds: float) -> str:
    """The shortest string that `parse_duration` turns back into exactly `seconds` ("250ms")."""
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds == 0:
        return "0s"
    numerator, places = _exact(repr(float(seconds)), UNIT_MILLISECONDS["s"])
    milliseconds, remainder = divmod(numerator, 10**places)
    candidates: list[str] = []
    if not remainder:
        for unit, length in UNIT_MILLISECONDS.items():
            count, left = divmod(milliseconds, length)
            if not left:
                candidates.append(f"{count}{unit}")
        candidates.append(_compound(milliseconds))
    candidates.append(_fixed_point(numerator, places + 3) + "s")
    # min() keeps the first of equally short candidates: whole units, largest first.
    valid = [text for text in candidates if parse_duration(text) == seconds]
    return min(valid, key=len)


def _compound(milliseconds: int) -> str:
    """Greedy "1d2h3m4s5ms" form of a positive whole number of milliseconds."""
    parts: list[str] = []
    for unit, length in UNIT_MILLISECONDS.items():
        count, milliseconds = divmod(milliseconds, length)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _fixed_point(numerator: int, places: int) -> str:
    """`numerator / 10**places` written out in full, trailing zeros dropped ("0.0000001")."""
    digits = str(numerator).rjust(places + 1, "0")
    whole, fraction = digits[: len(digits) - places], digits[len(digits) - places :]
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def format_age(seconds: float | None) -> str:
    """A short age: 850ms, 12s, 5m03s, 2h05m, 3d04h."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // smaller_size:02d}{smaller}"
    return f"{whole}s"
