"""The supervisor's process table: one slot per worker process, and what the group's probes read.

Written by the supervisor's event loop, read by its HTTP thread: plain attributes, each read whole."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class SlotState(StrEnum):
    STARTING = "starting"  # spawned, not ready yet
    RUNNING = "running"  # said READY=1
    RESTARTING = "restarting"  # died; waiting for its backoff to pass
    STOPPED = "stopped"  # ended for good (drain, burst done, or the group stopped)


@dataclass(slots=True)
class Slot:
    """Worker number `index` (0-based) of the group, across its restarts."""

    index: int
    state: SlotState = SlotState.STARTING
    pid: int | None = None
    port: int | None = None
    """Its private probe port, once the worker announced it."""
    started: float = 0.0
    """time.monotonic() of the current process's start."""
    ready_at: float | None = None
    last_ping: float | None = None
    """time.monotonic() of its last WATCHDOG=1 (only when the supervisor passes a watchdog on)."""
    status: str = ""
    failures: int = 0
    """Deaths in a row without a stable run in between (see RestartPolicy)."""
    restarts: int = 0
    restart_at: float | None = None
    last_exit: str = ""
    finished: bool = False
    """It ended its work as asked (burst mode: the queues are empty); not restarted."""

    def spawned(self, pid: int) -> None:
        self.state = SlotState.STARTING
        self.pid = pid
        self.port = None
        self.started = time.monotonic()
        self.ready_at = None
        self.last_ping = None
        self.restart_at = None

    @property
    def name(self) -> str:
        return f"worker {self.index + 1}" + (f" (pid {self.pid})" if self.pid else "")


@dataclass(slots=True)
class ProcessTable:
    """Every slot, and whether the group is stopping."""

    slots: list[Slot] = field(default_factory=list)
    stopping: bool = False
    crash_loop: int = 5
    restarts: dict[str, int] = field(default_factory=dict)
    """Workers started again, by how the dead one ended: "exit" (a code) or "signal"."""

    @classmethod
    def of(cls, count: int, crash_loop: int) -> ProcessTable:
        return cls([Slot(index) for index in range(count)], crash_loop=crash_loop)

    def live(self) -> list[Slot]:
        """Slots with a process now (starting or running), in slot order."""
        return [s for s in self.slots if s.state in (SlotState.STARTING, SlotState.RUNNING)]

    def all_ready(self) -> bool:
        return all(slot.state == SlotState.RUNNING for slot in self.slots)

    def problems(self) -> list[str]:
        """Why the group is unhealthy without asking a worker: a worker restarting too often, or
        down with no restart coming (never while the group stops: then workers end on purpose)."""
        if self.stopping:
            return []
        found = []
        for slot in self.slots:
            if slot.failures >= self.crash_loop:
                found.append(
                    f"worker {slot.index + 1} died {slot.failures} times in a row "
                    f"(last: {slot.last_exit})"
                )
            elif slot.state == SlotState.STOPPED and not slot.finished:
                found.append(f"worker {slot.index + 1} is down ({slot.last_exit or 'stopped'})")
        return found

    def status_line(self) -> str:
        """systemd's STATUS= for the group."""
        ready = sum(slot.state == SlotState.RUNNING for slot in self.slots)
        text = f"{ready}/{len(self.slots)} workers running"
        restarting = sum(slot.state == SlotState.RESTARTING for slot in self.slots)
        return text + (f", {restarting} restarting" if restarting else "")
