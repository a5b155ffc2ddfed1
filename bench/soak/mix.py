"""The soak's feature mix, produced beside the steady `chaos` jobs and under the same faults:

- **limits**: `limited` jobs (the `chaos` job under a rate and a concurrency limit, `[limits.rate]`
  and `[limits.slots]`), every other one in one of a few groups (`enqueue(..., group=)`);
- **event streams**: `emitter` jobs (bench/soak/jobs.py) that emit `token` events and progress;
  one in `follow_every` is followed live by :class:`Follower` with `job.events()`;
- **workflows**: diamonds stored with `client.flow()`: `a`, then `b` and `c` after it, then `d`
  after both, all `chaos` jobs, so the ledger tells when each ran.

Every job has an id of the producer's own, acknowledged in the run's `Acks` like the steady ones,
so the ledger checker covers them; a failed send is sent again with the same ids (a flow too:
jobs whose id exists are neither stored nor linked again).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.soak.producer import GUARD, Acks, enqueue_until_acked
from jobd.client import Client, JobEvent
from jobd.client.producer import Call
from jobd.sync_client import SyncClient

FOLLOW_GUARD = 180.0
"""How long one reader may take to see its job's end event, reconnects included."""
TERMINAL = {"succeeded", "failed", "aborted"}


@dataclass(frozen=True)
class Mix:
    """What the feature producers send per second, and the limits of `limited`."""

    limited_rate: float = 100.0
    limited_seconds: float = 0.05
    limit_rate: int = 120
    """`[limits.rate] rate = "<limit_rate>/s"`"""
    limit_concurrency: int = 8
    """`[limits.slots] concurrency`"""
    groups: int = 4
    emitter_rate: float = 20.0
    tokens: int = 20
    emitter_seconds: float = 0.5
    """Long enough that a killed worker often holds a followed stream (a retried try)."""
    follow_every: int = 2
    flow_rate: float = 5.0
    """Diamonds (4 jobs each) per second."""

    @property
    def jobs_per_second(self) -> float:
        return self.limited_rate + self.emitter_rate + 4 * self.flow_rate


@dataclass
class Sent:
    """What the feature producer sent, for the checks."""

    limited: list[str] = field(default_factory=list)
    emitters: list[str] = field(default_factory=list)
    parents: dict[str, list[str]] = field(default_factory=dict)
    """workflow child id -> its parents' ids"""
    flow_retries: int = 0
    flows_given_up: int = 0


class FeatureProducer(threading.Thread):
    """Sends the mix at its rates, every `tick`, paced by the monotonic clock like `Producer`."""

    def __init__(self, url: str, prefix: str, ledger_key: str, acks: Acks, mix: Mix,
                 follower: Follower | None, tick: float = 0.05) -> None:  # fmt: skip
        super().__init__(name="feature-producer", daemon=True)
        self.url, self.prefix, self.ledger_key = url, prefix, ledger_key
        self.acks, self.mix, self.follower, self.tick = acks, mix, follower, tick
        self.sent = Sent()
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._counts: Counter[str] = Counter()

    def stop(self) -> None:
        self._halt.set()
        self.join(GUARD + 30)

    def run(self) -> None:
        try:
            with SyncClient(self.url, key_prefix=self.prefix) as jobs:
                started = next_tick = time.monotonic()
                while not self._halt.is_set():
                    elapsed = time.monotonic() - started
                    self._limited(jobs, self._due("limited", self.mix.limited_rate, elapsed))
                    self._emitters(jobs, self._due("emitter", self.mix.emitter_rate, elapsed))
                    for _ in range(self._due("flow", self.mix.flow_rate, elapsed)):
                        self._flow(jobs)
                    next_tick += self.tick
                    pause = next_tick - time.monotonic()
                    if pause > 0:
                        self._halt.wait(pause)
                    else:
                        next_tick = time.monotonic()
        except BaseException as error:  # noqa: BLE001 - reported by the run
            self.error = error

    def _due(self, kind: str, rate: float, elapsed: float) -> int:
        return min(200, max(0, int(elapsed * rate) - self._counts[kind]))

    def _limited(self, jobs: SyncClient, count: int) -> None:
        if count <= 0:
            return
        first = self._counts["limited"]
        self._counts["limited"] += count
        args = (self.ledger_key, self.mix.limited_seconds)
        batches: dict[str | None, list[str]] = {}
        for n in range(first, first + count):
            group = None if n % 2 == 0 else f"t{(n // 2) % self.mix.groups}"
            batches.setdefault(group, []).append(f"L{n}")
        for group, ids in batches.items():
            calls: list[Call] = [("limited", args, {})] * len(ids)
            if enqueue_until_acked(jobs, self.acks, ids, calls, self._halt, group=group):
                self.sent.limited.extend(ids)

    def _emitters(self, jobs: SyncClient, count: int) -> None:
        if count <= 0:
            return
        first = self._counts["emitter"]
        self._counts["emitter"] += count
        ids = [f"e{n}" for n in range(first, first + count)]
        args = (self.ledger_key, self.mix.tokens, self.mix.emitter_seconds)
        calls: list[Call] = [("emitter", args, {})] * count
        if enqueue_until_acked(jobs, self.acks, ids, calls, self._halt):
            self.sent.emitters.extend(ids)
            if self.follower is not None:
                every = self.mix.follow_every
                for n, job_id in enumerate(ids, first):
                    if n % every == 0:
                        self.follower.follow(job_id)

    def _flow(self, jobs: SyncClient) -> None:
        n = self._counts["flow"]
        self._counts["flow"] += 1
        a, b, c, d = (f"f{n}{part}" for part in "abcd")
        args = (self.ledger_key, self.mix.limited_seconds)
        deadline = time.monotonic() + GUARD
        while True:
            at = time.time()
            try:
                with jobs.flow() as flow:
                    first = flow.enqueue("chaos", *args, job_id=a)
                    left = flow.enqueue("chaos", *args, job_id=b, after=[first])
                    right = flow.enqueue("chaos", *args, job_id=c, after=[first])
                    flow.enqueue("chaos", *args, job_id=d, after=[left, right])
            except Exception:  # noqa: BLE001 - the same ids go again
                self.sent.flow_retries += 1
                if time.monotonic() > deadline or self._halt.is_set():
                    self.sent.flows_given_up += 1
                    self.acks.give_up([a, b, c, d])
                    return
                time.sleep(0.05)
                continue
            break
        self.acks.add([a, b, c, d], at)
        self.sent.parents.update({b: [a], c: [a], d: [b, c]})


@dataclass
class Stream:
    """What one reader saw of one job's events."""

    job_id: str
    events: int = 0
    reconnects: int = 0
    ended: str | None = None
    problems: list[str] = field(default_factory=list)
    dropped: int = 0
    tries: int = 0


class Follower(threading.Thread):
    """Follows jobs' event streams live with `Client.job(id).events()` on an asyncio loop of its
    own (reaching Redis directly, like the producers), at most `readers` at once. A reader whose
    stream breaks (a Redis pause, a reset) resumes after the last id it got."""

    def __init__(self, url: str, prefix: str, tokens: int, readers: int = 64) -> None:
        super().__init__(name="follower", daemon=True)
        self.url, self.prefix, self.tokens, self.readers = url, prefix, tokens, readers
        self.inbox: queue.Queue[str | None] = queue.Queue()
        self.streams: list[Stream] = []
        self.error: BaseException | None = None

    def follow(self, job_id: str) -> None:
        self.inbox.put(job_id)

    def finish(self, timeout: float) -> None:
        """No more jobs to follow: wait until every reader has ended (or `timeout`)."""
        self.inbox.put(None)
        self.join(timeout)

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported by the run
            self.error = error

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.readers)
        tasks: set[asyncio.Task[None]] = set()
        async with Client(self.url, key_prefix=self.prefix) as client:
            while (job_id := await loop.run_in_executor(None, self.inbox.get)) is not None:
                await gate.acquire()
                task = asyncio.create_task(self._read(client, job_id, gate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)

    async def _read(self, client: Client, job_id: str, gate: asyncio.Semaphore) -> None:
        stream = Stream(job_id)
        seen: list[JobEvent] = []
        try:
            deadline = time.monotonic() + FOLLOW_GUARD
            while stream.ended is None:
                after = seen[-1].id if seen else None
                try:
                    async for event in client.job(job_id).events(after=after):
                        seen.append(event)
                except Exception as error:  # noqa: BLE001 - resumed, and counted
                    stream.reconnects += 1
                    if time.monotonic() > deadline:
                        stream.problems.append(f"gave up after {type(error).__name__}: {error}")
                        break
                    await asyncio.sleep(0.2)
                    continue
                if seen and seen[-1].event in TERMINAL:
                    stream.ended = seen[-1].event
                elif time.monotonic() > deadline:
                    stream.problems.append("no end event")
                    break
            judge(stream, seen, self.tokens)
        finally:
            self.streams.append(stream)
            gate.release()


def judge(stream: Stream, seen: Sequence[JobEvent], tokens: int) -> None:
    """Ids in stream order without repeats; ended by `succeeded`; the last try's output complete
    (tokens 0..n-1 in order and a final progress of 1.0), unless a `dropped` notice says some
    events could not be kept."""
    stream.events = len(seen)
    ids = [event.id for event in seen]
    if any(later <= earlier for earlier, later in itertools.pairwise(ids)):
        stream.problems.append("event ids out of order or repeated")
    if stream.ended not in (None, "succeeded"):
        stream.problems.append(f"ended {stream.ended}")
    stream.dropped = sum(int((e.data or {}).get("count", 1)) for e in seen if e.event == "dropped")
    starts = [i for i, event in enumerate(seen) if event.event == "started"]
    stream.tries = len(starts)
    if not starts:
        stream.problems.append("no started event")
        return
    last = seen[starts[-1] :]
    got = [e.data["i"] for e in last if e.event == "token" and isinstance(e.data, dict)]
    fractions = [e.data.get("fraction") for e in last if e.event == "progress" and e.data]
    if stream.dropped:
        return
    if got != list(range(tokens)):
        stream.problems.append(f"last try's tokens {got[:5]}… ({len(got)} of {tokens})")
    if not fractions or fractions[-1] != 1.0:
        stream.problems.append(f"last progress {fractions[-1:] or 'none'}")


def stream_summary(streams: Sequence[Stream]) -> dict[str, Any]:
    bad = [s for s in streams if s.problems]
    return {
        "followed": len(streams),
        "ended_succeeded": sum(1 for s in streams if s.ended == "succeeded"),
        "events_read": sum(s.events for s in streams),
        "retried_tries_seen": sum(max(0, s.tries - 1) for s in streams),
        "reconnects": sum(s.reconnects for s in streams),
        "dropped_notices": sum(1 for s in streams if s.dropped),
        "with_problems": len(bad),
        "problems": [f"{s.job_id}: {'; '.join(s.problems)}" for s in bad[:20]],
    }
