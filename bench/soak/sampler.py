"""Once a second: the RSS of every live worker (VmRSS from /proc/PID/status), the jobs' Redis
`used_memory` (INFO memory) and DBSIZE over a direct connection (short timeout: a paused Redis
gives no sample), and the jobs acknowledged and ended so far. Also the least-squares slope used
for memory growth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from bench.soak.world import World

MIB = 1024 * 1024


@dataclass
class Sample:
    t: float
    """Seconds since the run's load started (negative before it)."""
    used_memory: int | None
    dbsize: int | None
    acked: int
    done: int


@dataclass
class Series:
    """The RSS of one worker process over time."""

    name: str
    pid: int
    points: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the load started, MiB)"""


def rss_mib(pid: int) -> float | None:
    """VmRSS of `pid` in MiB, or None if the process is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (None with fewer than 3 points or no spread in x)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


class Sampler(threading.Thread):
    """See the module docstring; `t0` (monotonic) is set by the run when the load starts."""

    def __init__(
        self,
        world: World,
        acked: Callable[[], int],
        done: Callable[[], int],
        interval: float = 1.0,
    ) -> None:
        super().__init__(name="sampler", daemon=True)
        self.world = world
        self.acked = acked
        self.done = done
        self.interval = interval
        self.t0 = time.monotonic()
        self.samples: list[Sample] = []
        self.series: dict[int, Series] = {}
        self._halt = threading.Event()
        self._client = world.client(timeout=0.5)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            self.sample()
            next_at += self.interval
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        """End the thread; `sample()` may still be called, then `close()`."""
        self._halt.set()
        self.join(30)

    def close(self) -> None:
        self._client.close()

    def sample(self) -> Sample:
        t = time.monotonic() - self.t0
        for process in self.world.fleet.live():
            mib = rss_mib(process.pid)
            if mib is not None:
                series = self.series.setdefault(process.pid, Series(process.name, process.pid))
                series.points.append((t, mib))
        used: int | None
        keys: int | None
        try:
            used = int(self._client.info("memory")["used_memory"])
            keys = int(self._client.dbsize())
        except (redis.RedisError, OSError):
            used = keys = None
        sample = Sample(t, used, keys, self.acked(), self.done())
        self.samples.append(sample)
        return sample


def rss_table(series: dict[int, Series], since: float, warmup: float) -> list[dict[str, object]]:
    """Per worker process: first, peak and last RSS, and the slope (MiB/min) of its samples from
    `since` (seconds into the load: the run's second half) and at least `warmup` seconds into the
    process's own life (a replacement warms up too); n/a with fewer than 10 such samples."""
    rows: list[dict[str, object]] = []
    for s in series.values():
        fit_from = max(since, s.points[0][0] + warmup)
        late = [(t / 60, mib) for t, mib in s.points if t >= fit_from]
        fitted = slope(late) if len(late) >= 10 else None
        rows.append({
            "name": s.name, "pid": s.pid, "samples": len(s.points),
            "from_s": round(s.points[0][0], 1), "to_s": round(s.points[-1][0], 1),
            "start_mib": round(s.points[0][1], 1), "end_mib": round(s.points[-1][1], 1),
            "peak_mib": round(max(m for _, m in s.points), 1),
            "fit_from_s": round(fit_from, 1), "slope_samples": len(late),
            "slope_mib_per_min": None if fitted is None else round(fitted, 3),
        })  # fmt: skip
    return rows


def memory_slope(samples: Sequence[Sample], since: float, until: float) -> float | None:
    """Slope of Redis used_memory (MiB/min) over the samples between `since` and `until`."""
    points = [
        (s.t / 60, s.used_memory / MIB)
        for s in samples
        if s.used_memory is not None and since <= s.t <= until
    ]
    return slope(points) if len(points) >= 10 else None


def key_slope(samples: Sequence[Sample], since: float, until: float) -> float | None:
    """Slope of the jobs' Redis key count (keys/min) over the samples between `since` and `until`."""
    points = [
        (s.t / 60, float(s.dbsize))
        for s in samples
        if s.dbsize is not None and since <= s.t <= until
    ]
    return slope(points) if len(points) >= 10 else None
