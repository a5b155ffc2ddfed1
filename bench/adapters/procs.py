"""Memory of a worker's process tree, read from /proc (no psutil in the peers' venvs)."""

from __future__ import annotations

import time
from pathlib import Path

PROC = Path("/proc")
TREE_REFRESH_SECONDS = 0.5


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads' children)."""
    found: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    pids = [pid]
    index = 0
    while index < len(pids):
        pids.extend(children(pids[index]))
        index += 1
    return pids


def start_time(pid: int) -> int | None:
    """The start time of `pid` (clock ticks since boot), None if it is gone: tells a reused pid."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemorySampler:
    """Peak of the summed RSS of the process trees under `roots`, sampled on demand."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak_tree_rss_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.samples = 0
        self.members: list[int] = []
        self.refreshed = 0.0

    def sample(self) -> None:
        now = time.monotonic()
        if now - self.refreshed > TREE_REFRESH_SECONDS:
            self.members = [pid for root in self.roots for pid in tree(root)]
            self.refreshed = now
        total = 0
        for pid in self.members:
            total += status_kib(pid, "VmRSS")
            self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), status_kib(pid, "VmHWM"))
        self.samples += 1
        self.peak_tree_rss_kib = max(self.peak_tree_rss_kib, total)

    def peak_mib(self) -> float:
        """The sampled peak; for a tree of one process its kernel high-water mark (exact)."""
        peak = self.peak_tree_rss_kib
        if len(self.hwm_kib) == len(self.roots):
            peak = max(peak, sum(self.hwm_kib.values()))
        return peak / 1024

    def processes(self) -> int:
        return len(self.hwm_kib)
