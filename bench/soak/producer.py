"""The soak's producer: `chaos` jobs at a steady rate, paced by the monotonic clock.

Every `tick` (20 ms) the producer sends what the schedule says is due (`rate * elapsed` minus what
was sent) in one `enqueue_operation` call (one round trip, like `enqueue_many`) with ids of its own,
so that a call whose reply was lost can be sent again with the same ids until Redis acknowledges it
(the chaos suite's producers do the same, one job at a time). After an outage it catches up in
batches of at most `max_batch`. Redis is reached directly, not through the fault proxy: the faults
are aimed at the workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from jobd.client.producer import Call
from jobd.sync_client import SyncClient

GUARD = 120.0
"""How long one batch is retried before its ids are given up as unacknowledged."""


class Acks:
    """The acknowledged ids and when each was enqueued (wall clock); shared by producer threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ids: list[str] = []
        self.enqueued_at: dict[str, float] = {}
        self.unsure: list[str] = []
        """Ids whose enqueue was never acknowledged (may or may not be stored)."""
        self.retries = 0

    def add(self, ids: Sequence[str], at: float) -> None:
        with self._lock:
            self.ids.extend(ids)
            for job_id in ids:
                self.enqueued_at[job_id] = at

    def give_up(self, ids: Sequence[str]) -> None:
        with self._lock:
            self.unsure.extend(ids)

    def count(self) -> int:
        with self._lock:
            return len(self.ids)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.ids)


def enqueue_until_acked(
    jobs: SyncClient,
    acks: Acks,
    ids: Sequence[str],
    calls: Sequence[Call],
    stop: threading.Event | None = None,
    group: str | None = None,
) -> bool:
    """One batch: send it, re-send with the same ids after an error, until acknowledged (True) or
    the guard passes or `stop` is set while failing (False: the ids go to `acks.unsure`); every
    job of it in `group` if one is given."""
    deadline = time.monotonic() + GUARD
    while True:
        at = time.time()
        try:
            jobs.run(
                jobs.enqueue_operation(
                    calls,
                    ids,
                    queue=None,
                    delay=None,
                    at=None,
                    priority=0,
                    max_tries=None,
                    timeout=None,
                    expires=None,
                    strict=False,
                    group=group,
                )
            )
        except Exception:  # noqa: BLE001 - any failure: the same ids go again
            acks.retries += 1
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                acks.give_up(ids)
                return False
            time.sleep(0.05)
            continue
        acks.add(ids, at)
        return True


class Producer(threading.Thread):
    """See the module docstring; `stop()` ends production (the batch in flight completes)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        ledger_key: str,
        acks: Acks,
        *,
        rate: float,
        job_seconds: float,
        tick: float = 0.02,
        max_batch: int = 500,
    ) -> None:
        super().__init__(name="producer", daemon=True)
        self.url, self.prefix, self.ledger_key = url, prefix, ledger_key
        self.acks = acks
        self.rate = rate
        self.job_seconds = job_seconds
        self.tick = tick
        self.max_batch = max_batch
        self._halt = threading.Event()
        self.sent = 0
        self.started = 0.0
        self.stopped = 0.0
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._halt.set()
        self.join(GUARD + 30)

    @property
    def seconds(self) -> float:
        return (self.stopped or time.monotonic()) - self.started

    def run(self) -> None:
        args: tuple[Any, ...] = (self.ledger_key, self.job_seconds)
        try:
            with SyncClient(self.url, key_prefix=self.prefix) as jobs:
                self.started = time.monotonic()
                next_tick = self.started
                while not self._halt.is_set():
                    due = int((time.monotonic() - self.started) * self.rate) - self.sent
                    count = min(due, self.max_batch)
                    if count > 0:
                        ids = [f"s{self.sent + i}" for i in range(count)]
                        calls: list[Call] = [("chaos", args, {})] * count
                        enqueue_until_acked(jobs, self.acks, ids, calls, self._halt)
                        self.sent += count
                    next_tick += self.tick
                    pause = next_tick - time.monotonic()
                    if pause > 0:
                        self._halt.wait(pause)
                    else:
                        next_tick = time.monotonic()  # behind: no burst of empty ticks
        except BaseException as error:  # noqa: BLE001 - reported by the run
            self.error = error
        finally:
            self.stopped = time.monotonic()
