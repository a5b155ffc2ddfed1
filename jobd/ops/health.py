"""Liveness and readiness, shared by the event loop (which writes them) and the HTTP thread (which
reads them): a loop that stops ticking is not alive, whatever it last said."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Health:
    """What the probes report. Plain attributes: written on the loop, read from another thread."""

    def __init__(self, max_loop_lag: float) -> None:
        self.max_loop_lag = max_loop_lag
        self.last_tick = time.monotonic()
        self.lag = 0.0
        self.ready = False
        self.reason = "starting"
        """Why the worker is not ready (for /readyz's body)."""

    def alive(self) -> bool:
        """False once the event loop has not ticked for longer than max_loop_lag."""
        return time.monotonic() - self.last_tick <= self.max_loop_lag

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready = ready
        self.reason = "" if ready else reason


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True if it was set. The shape of every periodic
    loop: it ends at once when the worker finishes, whatever a swallowed cancellation did."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def watch_loop(
    health: Health, interval: float, on_lag: Callable[[float], None] | None = None
) -> None:
    """Tick every `interval` seconds, recording how late each timer fired."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)  # the tick itself is what is measured
        now = time.monotonic()
        health.lag = max(0.0, now - started - interval)
        health.last_tick = now
        if on_lag is not None:
            on_lag(health.lag)
