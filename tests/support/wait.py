"""Polling helpers for tests: wait for a condition instead of sleeping a fixed time.

The timeout is a hang guard, not a timing assertion: keep it generous and let the
predicate decide when the test may proceed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def _failure(message: str, timeout: float) -> AssertionError:
    what = message or "condition"
    return AssertionError(f"{what} (still false after {timeout:g}s)")


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 10,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is truthy; AssertionError with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise _failure(message, timeout)
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Async :func:`wait_until`; ``predicate`` may be sync or return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise _failure(message, timeout)
        await asyncio.sleep(interval)
