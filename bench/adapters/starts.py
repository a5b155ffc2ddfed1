"""Start-time figures of a rate-limited drain (W7L), from the jobs' start stamps in milliseconds:
the rate reached and the most starts in any one-second window (the sliding-window check)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def per_full_second(stamps: Sequence[int]) -> float:
    """Mean starts per one-second window over the full seconds from the first start (the last,
    partial second left out)."""
    first = min(stamps)
    full = (max(stamps) - first) // 1000
    if full == 0:
        return float(len(stamps))
    return sum(1 for moment in stamps if moment < first + 1000 * full) / full


def most_in_a_second(stamps: Sequence[int]) -> int:
    """The most starts in any window [t, t + 1000 ms)."""
    ordered = sorted(stamps)
    top, left = 0, 0
    for right, moment in enumerate(ordered):
        while moment - ordered[left] >= 1000:
            left += 1
        top = max(top, right - left + 1)
    return top


def summary(stamps: Sequence[int], expected: int) -> dict[str, Any]:
    if not stamps:
        return {"started": 0, "expected": expected}
    span = (max(stamps) - min(stamps)) / 1000
    return {
        "started": len(stamps),
        "expected": expected,
        "start_rate_per_s": per_full_second(stamps),
        "start_span_rate_per_s": (len(stamps) - 1) / span if span > 0 else float("nan"),
        "most_starts_in_1s": most_in_a_second(stamps),
    }
