"""Redis replies as Python values, read leniently (what an operator tool shows must not break on a
field that is missing or was written by hand): text, integers, and millisecond times."""

from __future__ import annotations

from datetime import UTC, datetime


def text(value: object) -> str:
    """A Redis reply as text ("" for nil)."""
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def number(value: object) -> int | None:
    """A stored integer, or None when it is missing or not a number."""
    try:
        return int(text(value)) if value is not None else None
    except ValueError:
        return None


def moment(milliseconds: int | None) -> datetime | None:
    return None if milliseconds is None else datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
