"""Following the ledger while the soak runs: the `chaos` job RPUSHes `event|job id|try|pid|time`
lines (tests/jobs_for_tests.py) to the ledger Redis, and :class:`LedgerTail` reads what was added
since its last look, every few tens of milliseconds, in a thread of its own.

It keeps only aggregates (the ids that ended, the runs each process has open) plus the pending
:class:`Watch` objects that the chaos thread registers to time a recovery: a watch resolves on the
first new entry that matches it, at that entry's time (the worker's wall clock, the same machine's).
The full ledger is read once more at the end for the checker (`tests.support.checker.read_ledger`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from tests.support.checker import Entry

Match = Callable[[Entry, float | None], bool]
"""(entry, start time of its run or None) -> does this entry resolve the watch."""
CHUNK = 20_000


@dataclass
class Watch:
    """Waits for the first ledger entry matching `match` after it was registered."""

    what: str
    since: float
    """Wall time of the fault the watch times (time.time())."""
    match: Match
    at: float | None = None
    """Time of the matching entry; None while pending (or never seen)."""
    note: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def seconds(self) -> float | None:
        return None if self.at is None else self.at - self.since


class LedgerTail(threading.Thread):
    """See the module docstring. `stop()` ends the thread after one last read."""

    def __init__(self, client: redis.Redis, key: str, interval: float = 0.05) -> None:
        super().__init__(name="ledger-tail", daemon=True)
        self._client = client
        self._key = key
        self._interval = interval
        self._offset = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._watches: list[Watch] = []
        self.ended: set[str] = set()
        self.starts = 0
        self.ends = 0
        self.open: dict[int, dict[tuple[str, int], float]] = defaultdict(dict)
        """pid -> (job id, try) -> start time, for runs started and not (yet) ended."""
        self.errors = 0

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            self._poll_safely()
        self._poll_safely()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def _poll_safely(self) -> None:
        try:
            with self._reading:
                while self.poll() == CHUNK:
                    pass
        except redis.RedisError:
            self.errors += 1  # the ledger is never faulted; counted and reported if it happens

    def poll(self) -> int:
        """Read and apply what was appended since the last call; returns how many entries (callers
        hold `_reading`)."""
        lines = self._client.lrange(self._key, self._offset, self._offset + CHUNK - 1)
        entries = []
        for line in lines:
            text = line.decode() if isinstance(line, bytes) else str(line)
            event, job_id, try_number, pid, at = text.split("|")
            entries.append(Entry(event, job_id, int(try_number), int(pid), float(at)))
        with self._lock:
            self._offset += len(lines)
            for entry in entries:
                self._apply(entry)
        return len(lines)

    def _apply(self, entry: Entry) -> None:
        runs = self.open[entry.pid]
        run = (entry.job_id, entry.try_number)
        started: float | None = None
        if entry.event == "start":
            self.starts += 1
            runs[run] = entry.time
        else:
            self.ends += 1
            self.ended.add(entry.job_id)
            started = runs.pop(run, None)
        if self._watches:
            for watch in [w for w in self._watches if w.match(entry, started)]:
                watch.at = entry.time
                watch.done.set()
                self._watches.remove(watch)

    # -- for the other threads -----------------------------------------------------------------

    def watch(self, what: str, since: float, match: Match, note: str = "") -> Watch:
        """Register a watch; it resolves on the first matching entry read from now on."""
        watch = Watch(what, since, match, note=note)
        with self._lock:
            self._watches.append(watch)
        return watch

    def open_runs(self, pid: int) -> dict[tuple[str, int], float]:
        """The runs `pid` has started and not ended, as far as read (a copy)."""
        with self._lock:
            return dict(self.open.get(pid, {}))

    def missing(self, ids: list[str]) -> list[str]:
        """The ids of `ids` with no `end` entry yet."""
        with self._lock:
            return [job_id for job_id in ids if job_id not in self.ended]

    def done(self) -> int:
        with self._lock:
            return len(self.ended)

    def catch_up(self) -> None:
        """Read everything appended so far, now (from the calling thread)."""
        self._poll_safely()
