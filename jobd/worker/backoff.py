"""The delay before a failed job's next try: a pure function of retry settings and try number.

Jitter keeps the delay between half and all of the computed value (what AWS calls "equal jitter"):
failed jobs spread out so they do not retry in lockstep, yet never retry sooner than half the delay.
"""

from __future__ import annotations

import random as random_module
from collections.abc import Callable

from jobd.config.settings import Backoff, RetrySettings

# 2.0 ** 1023 is the largest finite power of two; beyond it the delay is `max` anyway.
_LARGEST_EXPONENT = 1023


def backoff_delay(
    retry: RetrySettings,
    try_number: int,
    *,
    random: Callable[[], float] = random_module.random,
) -> float:
    """Seconds to wait before the next try, after try `try_number` (1-based) failed.

    fixed: `base`; exponential: base * 2 ** (try_number - 1); both capped at `max`. With jitter the
    result is uniform in [delay / 2, delay], drawn with `random` (a float in [0, 1)).
    """
    if try_number < 1:
        raise ValueError(f"try_number is 1-based, got {try_number}")
    if retry.backoff is Backoff.FIXED:
        delay = retry.base
    else:
        exponent = min(try_number - 1, _LARGEST_EXPONENT)
        delay = retry.base * 2.0**exponent  # may overflow to inf: min() below caps it
    delay = min(delay, retry.max)
    if retry.jitter:
        delay = delay / 2 + random() * delay / 2
    return delay
