"""The chaos run's fault cycle: every `every` seconds the next fault of the rotation, each with the
recovery it times (docs/reliability.md §5.5 "Recovery latency"):

- `kill`: a burst of 1 s jobs is enqueued so that workers hold runs, then a worker that has a run
  open (chosen with the seeded random among those) gets SIGKILL and a replacement is started.
  *SIGKILL → job restarted*: from the kill to the first `start`, in any process, of a job the killed
  process had started and not ended (a new try once its lease expired).
- `pause`: the jobs' Redis is stopped (SIGSTOP) for `pause_seconds`, then resumed. *Redis back →
  first completion*: from the resume to the first `end` of a run that started after it (a job
  claimed after Redis came back ran to its end).
- `reset`: the proxy drops every worker connection. *Reset → first completion*: the same measure,
  from the reset.
- `term`: SIGTERM to a worker (seeded random), timed to its exit (*SIGTERM → exit*, under load:
  it drains its running jobs), then a replacement is started.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.soak.ledger import LedgerTail, Watch
from bench.soak.producer import Acks, enqueue_until_acked
from bench.soak.world import LEDGER_KEY, PREFIX, World
from jobd.client.producer import Call
from jobd.sync_client import SyncClient
from tests.support.checker import Entry

FAULTS = ("kill", "pause", "reset", "term")
LONG_JOB = 1.0
"""Seconds of the jobs enqueued before a kill, so that the victim certainly holds a run."""


@dataclass
class Fault:
    kind: str
    at: float
    """Seconds into the load."""
    worker: str = ""
    pid: int = 0
    orphans: int = 0
    """kill: runs the victim had open (per the ledger)."""
    seconds: float | None = None
    """term: SIGTERM → exit; the others: from their watch, once resolved."""
    exit_code: int | None = None
    watch: Watch | None = field(default=None, repr=False)
    note: str = ""


class ChaosMonkey(threading.Thread):
    """See the module docstring. `stop()` ends the cycle and heals any fault left on."""

    def __init__(
        self,
        world: World,
        tail: LedgerTail,
        acks: Acks,
        clock: Callable[[], float],
        *,
        every: float,
        seed: int,
        pause_seconds: float = 3.0,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.world = world
        self.tail = tail
        self.acks = acks
        self.clock = clock
        self.every = every
        self.rng = random.Random(seed)
        self.pause_seconds = pause_seconds
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self.killed: dict[int, float] = {}
        """pid -> time of death (wall clock), for the checker."""
        self.drained: dict[int, float] = {}
        self._halt = threading.Event()
        self._long = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(120)
        self.world.heal()

    def run(self) -> None:
        with SyncClient(self.world.redis.url, key_prefix=PREFIX) as jobs:
            index = 0
            while not self._halt.wait(self.every):
                kind = FAULTS[index % len(FAULTS)]
                index += 1
                try:
                    fault = getattr(self, f"_{kind}")(jobs)
                    self.faults.append(fault)
                except Exception:  # noqa: BLE001 - reported; the soak goes on
                    self.errors.append(f"{kind}: {traceback.format_exc(limit=3)}")
                    self.world.heal()

    # -- the faults ---------------------------------------------------------------------------

    def _live_slots(self) -> list[int]:
        """Slots whose worker runs (a replacement that failed to start leaves a slot empty)."""
        return [slot for slot, p in enumerate(self.world.fleet.slots) if p.ended is None]

    def _kill(self, jobs: SyncClient) -> Fault:
        live = self._live_slots()
        if not live:
            raise RuntimeError("no live worker to kill")
        ids = [f"long{self._long + i}" for i in range(len(live) * 4)]
        self._long += len(ids)
        calls: list[Call] = [("chaos", (LEDGER_KEY, LONG_JOB), {})] * len(ids)
        enqueue_until_acked(jobs, self.acks, ids, calls)
        deadline = time.monotonic() + 5.0
        candidates: list[int] = []
        while not candidates and time.monotonic() < deadline:
            time.sleep(0.05)
            now = time.time()
            candidates = [
                slot
                for slot in live
                if any(
                    now - started > 0.2
                    for started in self.tail.open_runs(self.world.fleet.slots[slot].pid).values()
                )
            ]
        slot = self.rng.choice(candidates or live)
        at = self.clock()
        process = self.world.kill(slot)
        assert process.ended is not None
        self.killed[process.pid] = process.ended
        time.sleep(0.3)  # the tail reads what the victim wrote before it died
        self.tail.catch_up()
        orphans = {job_id for job_id, _ in self.tail.open_runs(process.pid)}
        fault = Fault("kill", at, process.name, process.pid, orphans=len(orphans))
        if orphans:
            victim = process.pid

            def restarted(entry: Entry, _: float | None) -> bool:
                return entry.event == "start" and entry.pid != victim and entry.job_id in orphans

            fault.watch = self.tail.watch("kill", process.ended, restarted)
        else:
            fault.note = "no run open in the ledger at the kill"
        self.world.replace(slot)
        return fault

    def _pause(self, _: SyncClient) -> Fault:
        at = self.clock()
        self.world.redis.pause()
        try:
            time.sleep(self.pause_seconds)  # the outage's length: the fault itself
        finally:
            self.world.redis.resume()
        fault = Fault("pause", at, note=f"{self.pause_seconds:g} s")
        fault.watch = self._first_completion("pause", time.time())
        return fault

    def _reset(self, _: SyncClient) -> Fault:
        at = self.clock()
        since = time.time()
        assert self.world.proxy is not None
        dropped = self.world.proxy.reset()
        fault = Fault("reset", at, note=f"{dropped} connections")
        fault.watch = self._first_completion("reset", since)
        return fault

    def _term(self, _: SyncClient) -> Fault:
        live = self._live_slots()
        if not live:
            raise RuntimeError("no live worker to stop")
        slot = self.rng.choice(live)
        at = self.clock()
        process, took = self.world.terminate(slot)
        assert process.ended is not None
        self.drained[process.pid] = process.ended
        fault = Fault("term", at, process.name, process.pid, seconds=took)
        fault.exit_code = process.exit_code
        self.world.replace(slot)
        return fault

    def _first_completion(self, what: str, since: float) -> Watch:
        def completed(entry: Entry, started: float | None) -> bool:
            return entry.event == "end" and started is not None and started >= since

        return self.tail.watch(what, since, completed)
