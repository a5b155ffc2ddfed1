"""When the supervisor starts a dead worker again: exponential backoff, reset by a stable run."""

from __future__ import annotations

import signal
from dataclasses import dataclass

EXIT_CONFIG = 78
"""A worker's configuration or credential error (EX_CONFIG): restarting cannot help."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """1 s before the first restart, doubling up to 30 s; a worker that ran `stable_after` seconds
    starts the count again. `crash_loop` failures in a row make the group unhealthy (/healthz 503,
    no systemd watchdog pings): the worker is still restarted, but something needs a person."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    crash_loop: int = 5

    def failures_after(self, previous: int, ran_for: float) -> int:
        """Failures in a row once a worker that ran `ran_for` seconds has died."""
        return 1 if ran_for >= self.stable_after else previous + 1

    def delay(self, failures: int) -> float:
        """Seconds to wait before starting a worker that died `failures` times in a row."""
        if failures <= 0:
            return 0.0
        return float(min(self.max_delay, self.first_delay * 2 ** (failures - 1)))

    def crash_looping(self, failures: int) -> bool:
        return failures >= self.crash_loop


def describe_exit(code: int) -> str:
    """A worker's exit status in words: `exited with code 1`, `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
