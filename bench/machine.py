"""What the figures were measured on: machine, OS, Python, redis-server and jobd's commit."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def git_commit() -> str:
    def git(*args: str) -> str:
        reply = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return reply.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def loop_seconds(iterations: int = 2_000_000, repeats: int = 3) -> float:
    """Median time of a plain Python counting loop: how fast this machine ran Python at the time,
    so that runs on other days (or under a busy host: this kind of VM varies by 2x) compare."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def describe() -> dict[str, str | int | float]:
    return {
        "arch": platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": round(memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "jobd_commit": git_commit(),
        "loop_2m_s": round(loop_seconds(), 3),
    }


def one_line(machine: dict[str, str | int | float]) -> str:
    return (
        f"{machine['arch']}, {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}"
        + (
            f"; a 2,000,000-step Python loop took {machine['loop_2m_s']:.3f} s"
            if "loop_2m_s" in machine
            else ""
        )
    )
