"""Durations as people write them: "250ms", "30s", "5m", "1h", "2d", "1h30m" or a number of seconds.

Pure functions only; every duration inside jobd is a float number of seconds.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

ACCEPTED_FORMAT = 'expected a duration like "250ms", "30s", "5m", "1h", "2d" or a number of seconds'

# Largest unit first: a compound duration lists its units in this order, each at most once.
UNIT_SECONDS: dict[str, Decimal] = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_UNIT_ORDER = tuple(UNIT_SECONDS)

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(_NUMBER)
_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)")


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
    total = _decimal_seconds(stripped)
    if total is None:
        raise ValueError(f"{ACCEPTED_FORMAT}, got {text!r}")
    # One rounding from the exact decimal sum, so "250ms" is exactly 0.25 and formats round-trip.
    return float(total)


def _parses(text: str) -> bool:
    return _decimal_seconds(text) is not None


def _decimal_seconds(text: str) -> Decimal | None:
    """The exact number of seconds that `text` denotes, or None when it is not a duration."""
    try:
        if _PLAIN_NUMBER.fullmatch(text):
            return Decimal(text)
        total = Decimal(0)
        position = 0
        previous_unit = -1
        for match in _PART.finditer(text):
            unit_index = _UNIT_ORDER.index(match.group(2))
            if match.start() != position or unit_index <= previous_unit:
                return None
            total += Decimal(match.group(1)) * UNIT_SECONDS[match.group(2)]
            position = match.end()
            previous_unit = unit_index
    except InvalidOperation:  # pragma: no cover - the patterns only admit valid decimals
        return None
    if position == 0 or position != len(text):
        return None
    return total


def format_duration(seconds: float) -> str:
    """The shortest string that `parse_duration` turns back into exactly `seconds` ("250ms")."""
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds == 0:
        return "0s"
    exact = Decimal(repr(float(seconds)))
    candidates: list[str] = []
    for unit, unit_seconds in UNIT_SECONDS.items():
        count = exact / unit_seconds
        if count == count.to_integral_value():
            candidates.append(f"{int(count)}{unit}")
    compound = _compound(exact)
    if compound:
        candidates.append(compound)
    candidates.append(f"{exact:f}s")
    # min() keeps the first of equally short candidates: whole units, largest first.
    valid = [text for text in candidates if parse_duration(text) == seconds]
    return min(valid, key=len)


def _compound(exact: Decimal) -> str:
    """Greedy "1d2h3m4s5ms" form, or "" when `exact` is not a whole number of milliseconds."""
    milliseconds = exact * 1000
    if milliseconds != milliseconds.to_integral_value() or exact == 0:
        return ""
    remaining = int(milliseconds)
    parts: list[str] = []
    for unit, unit_seconds in UNIT_SECONDS.items():
        unit_milliseconds = int(unit_seconds * 1000)
        count, remaining = divmod(remaining, unit_milliseconds)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
