"""Reading `[limits.NAME]` tables and the `limits` key of functions: rates such as "500/m", and the
checks that need the whole file (a limit named by a function exists; a limit serves one queue)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from jobd.config.durations import parse_duration
from jobd.config.fields import Reader, closest, join_path, shown_value
from jobd.config.settings import PERIODS, FunctionSettings, LimitSettings, Rate

_RATE = re.compile(r"^\s*(?P<count>\d+)\s*/\s*(?P<period>\S+)\s*$")
RATE_FORMAT = (
    '"N/s", "N/m" or "N/h" with N a whole number above 0, e.g. "500/m", or N per a duration of '
    'at least 1ms, e.g. "20/1100ms"'
)


def parse_rate(text: str) -> Rate | None:
    """ "500/m" -> Rate(500, 60.0), "20/1100ms" -> Rate(20, 1.1); None if `text` is no rate."""
    match = _RATE.match(text)
    if match is None or int(match["count"]) < 1:
        return None
    period = match["period"]
    if period in PERIODS:
        return Rate(int(match["count"]), PERIODS[period])
    try:
        seconds = parse_duration(period)
    except ValueError:
        return None
    # whole milliseconds: the scripts count windows in ms
    return (
        Rate(int(match["count"]), seconds) if seconds >= 0.001 and seconds * 1000 % 1 == 0 else None
    )


def read_rate(reader: Reader, raw: object, path: str) -> Rate | None:
    text = reader.string(raw, path)
    if text is None:
        return None
    rate = parse_rate(text)
    if rate is None:
        reader.problem(path, f"{shown_value(text, raw)} is not a rate: write {RATE_FORMAT}")
    return rate


def read_names(reader: Reader, raw: object, path: str) -> tuple[str, ...] | None:
    """The `limits` array of a function: distinct limit names (checked against [limits] later)."""
    names = reader.string_list(raw, path)
    if names is None or not isinstance(raw, list):
        return None
    for index, name in enumerate(names):
        if name in names[:index]:
            reader.problem(f"{path}[{index}]", f"duplicate limit {shown_value(name, raw[index])}")
            return None
    return tuple(names)


def check_limit(reader: Reader, limit: LimitSettings) -> bool:
    """A limit must bound something."""
    if limit.rate is None and limit.cost is None and limit.concurrency is None:
        reader.problem(
            join_path("limits", limit.name),
            "sets none of rate, cost and concurrency: give at least one",
        )
        return False
    return True


def check_references(
    reader: Reader,
    functions: Mapping[str, FunctionSettings],
    limits: Mapping[str, LimitSettings],
    defined: list[str],
) -> None:
    """Every name in a function's `limits` is a [limits] table (`defined`: all names in the file,
    good or not, so that a limit with a mistake of its own is not reported twice), and a limit
    serves the functions of one queue: its state lives beside that queue's keys, so the claim
    that starts a job checks and takes the limit in one atomic step (on Redis Cluster too)."""
    queues: dict[str, dict[str, str]] = {}
    for function in functions.values():
        for index, name in enumerate(function.limits):
            path = f"{join_path('functions', function.name)}.limits[{index}]"
            if name not in defined:
                close = closest(name, defined)
                hint = f"; did you mean {close!r}?" if close else ""
                reader.problem(path, f"unknown limit {name!r}, not in [limits]{hint}")
            elif name in limits:
                queues.setdefault(name, {}).setdefault(function.queue, function.name)
    for name, by_queue in queues.items():
        if len(by_queue) > 1:
            listed = ", ".join(f"{function} on {queue!r}" for queue, function in by_queue.items())
            reader.problem(
                join_path("limits", name),
                f"is used by functions of {len(by_queue)} queues ({listed}): a limit serves the "
                "functions of one queue; give each queue a limit of its own",
            )


def unused(
    functions: Mapping[str, FunctionSettings], limits: Mapping[str, LimitSettings]
) -> list[str]:
    """The limits no function names."""
    used = {name for function in functions.values() for name in function.limits}
    return [name for name in limits if name not in used]


def owner_queue(functions: Mapping[str, FunctionSettings], limit: str) -> str | None:
    """The queue whose functions use `limit` (the loader allows one), or None if none does."""
    for function in functions.values():
        if limit in function.limits:
            return function.queue
    return None
