"""What running jobs emit (`jobd.current_job().emit` and `.progress`), written to their event streams
in batches: everything emitted in the same moment goes out as one pipeline, one emit.lua call per
job that emitted. A job never waits for Redis here, unless the bounded buffer is full (see
`EventWriter.add`); the job's outcome is stored only after its events (`settle`), so that a
reader sees them before the end event. See docs/events.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from jobd.config.settings import Settings
from jobd.events import PROGRESS
from jobd.ops.metrics import Metrics
from jobd.redis.keys import QueueKeys
from jobd.redis.scripts import Argument, run_async_many
from jobd.serializer import JsonSerializer, Serializer
from jobd.worker.resilience import RedisCaller
from jobd.worker.runner import ClaimedJob
from jobd.worker.sealing import seal_event

logger = logging.getLogger("jobd.events")

STALLED = 1.0
"""A write in flight for this long means Redis is slow or away: with the buffer full, emit then
drops instead of waiting for room."""


@dataclass(slots=True, eq=False)
class _Stream:
    """The events of one running try not yet written."""

    job: ClaimedJob
    keys: tuple[str, str]
    pending: list[Argument] = field(default_factory=list)
    """name, time ms, data JSON ('' = none) per event, in order."""
    count: int = 0
    dropped: int = 0
    """Events dropped since the last batch: their ids are skipped, so readers see the gap."""
    progress: str = ""
    batch: int = 0
    in_flight: int = 0
    """Events of this job sent and not yet answered."""
    stale: bool = False
    """The job's lease was lost: nothing more of this try is written."""


class EventWriter:
    """Buffers the events of this worker's running jobs and writes them (`run` is its loop)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str,
        call: RedisCaller,
        serializer: Serializer,
        max_length: int,
        buffer: int,
        metrics: Metrics,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.call = call
        self.serializer = serializer
        self.max_length = max_length
        self.buffer = buffer
        self.metrics = metrics
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._buffered = 0
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._sending_since: float | None = None
        """When the write in flight began (monotonic); None while none is."""

    @classmethod
    def for_worker(
        cls, client: redis.asyncio.Redis, settings: Settings, call: RedisCaller, metrics: Metrics
    ) -> EventWriter:
        """The writer of a worker configured by `settings` ([events])."""
        events = settings.events
        return cls(
            client,
            prefix=settings.redis.key_prefix,
            call=call,
            serializer=JsonSerializer(events.max_data_bytes, settings.worker.max_json_depth),
            max_length=events.max_length,
            buffer=events.buffer,
            metrics=metrics,
        )

    # -- the job's side ----------------------------------------------------------------------------

    async def emit(self, job: ClaimedJob, event: str, data: Any) -> None:
        """Buffer one event of `job` (the name is checked by JobContext.emit); its data is
        encrypted when the job came encrypted (jobd.worker.sealing)."""
        text = "" if data is None else self._encode(event, data)
        await self.add(job, event, seal_event(job, event, text))

    async def progress(self, job: ClaimedJob, fraction: float, message: str | None) -> None:
        text = self._encode(PROGRESS, {"fraction": fraction, "message": message})
        await self.add(job, PROGRESS, seal_event(job, PROGRESS, text), progress=True)

    def _encode(self, event: str, data: Any) -> str:
        return self.serializer.dumps(data, what=f"data of event {event!r}").decode()

    async def add(self, job: ClaimedJob, event: str, data: str, *, progress: bool = False) -> None:
        """Buffer an encoded event. With the buffer full, wait for the writer to make room; but
        once a write has been in flight for STALLED seconds (Redis slow or away), drop the event
        instead, counted so that its id is skipped and readers see the gap."""
        while self._buffered >= self.buffer:
            stalled_for = self._stalled_for()
            if stalled_for >= STALLED:
                self._stream(job).dropped += 1
                self.metrics.events_dropped.labels(job.queue).inc()
                await asyncio.sleep(0)  # a job emitting in a loop still lets the loop run
                return
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), STALLED - stalled_for)
        stream = self._stream(job)
        if stream.stale:
            return
        stream.pending += (event, round(time.time() * 1000), data)
        stream.count += 1
        if progress:
            stream.progress = data
        self._buffered += 1
        self._wake.set()

    def _stalled_for(self) -> float:
        """How long the write in flight has taken so far (0 when none is in flight)."""
        since = self._sending_since
        return 0.0 if since is None else time.monotonic() - since

    def _stream(self, job: ClaimedJob) -> _Stream:
        key = (job.queue, job.id)
        stream = self._streams.get(key)
        if stream is None or stream.job is not job:
            keys = QueueKeys(self.prefix, job.queue)
            stream = self._streams[key] = _Stream(job, (keys.job(job.id), keys.events(job.id)))
        return stream

    # -- the handler's side ------------------------------------------------------------------------

    def has_events(self, job: ClaimedJob) -> bool:
        return (job.queue, job.id) in self._streams

    async def settle(self, job: ClaimedJob, deadline: float | None = None) -> None:
        """Wait until what `job` emitted is written (or refused): called before its outcome is
        stored, so that its end event comes after its own events. At `deadline` (monotonic; a
        drain that ran out of time) what is left unwritten is given up."""
        stream = self._streams.get((job.queue, job.id))
        if stream is None or stream.job is not job:
            return
        while (stream.count or stream.in_flight or stream.dropped) and not stream.stale:
            self._wake.set()
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._flushed.wait(), remaining)
            except TimeoutError:
                logger.warning("job %s: events not written before the drain ended", job.id)
                break
        self._forget(stream)

    def discard(self, job: ClaimedJob) -> None:
        """Forget what `job` emitted and was not written: its lease was lost."""
        stream = self._streams.get((job.queue, job.id))
        if stream is not None and stream.job is job:
            stream.stale = True
            self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        self._buffered -= stream.count
        stream.count = 0
        stream.pending = []
        key = (stream.job.queue, stream.job.id)
        if self._streams.get(key) is stream:
            del self._streams[key]

    # -- the writer loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Write batches as long as the worker runs (cancelled after the drain)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send every buffered event: one emit.lua call per job, all in one pipeline."""
        batch = [s for s in self._streams.values() if (s.count or s.dropped) and not s.stale]
        if not batch:
            self._signal_flushed()
            return
        calls: list[tuple[list[str], list[Argument]]] = []
        for stream in batch:
            stream.batch += 1
            calls.append(
                (
                    list(stream.keys),
                    [
                        stream.job.token, stream.batch, self.max_length, stream.dropped,
                        stream.progress, *stream.pending,
                    ],
                )
            )  # fmt: skip
            stream.in_flight, stream.count, stream.dropped = stream.count, 0, 0
            stream.pending, stream.progress = [], ""
        self._sending_since = time.monotonic()
        try:
            replies = await self.call(
                "write job events",
                lambda: run_async_many(self.redis, "emit", calls),
                keep_trying=True,
            )
        finally:
            self._sending_since = None
            for stream in batch:
                self._buffered -= stream.in_flight
        for stream, reply in zip(batch, replies, strict=True):
            self._settled(stream, reply)
        self._signal_flushed()

    def _settled(self, stream: _Stream, reply: object) -> None:
        sent, stream.in_flight = stream.in_flight, 0
        queue = stream.job.queue
        if reply in (b"ok", b"replayed"):
            self.metrics.events_written.labels(queue).inc(sent)
        elif reply == b"stale":
            stream.stale = True
            logger.debug("job %s: events of a try whose lease was lost not written", stream.job.id)
        else:
            # refused (maxmemory, a script error): skipped in the ids, so readers see the gap
            stream.dropped += sent
            self.metrics.events_dropped.labels(queue).inc(sent)
            logger.warning(
                "job %s: %d events not written: %s", stream.job.id, sent, reply,
                extra={"event": "events_dropped", "job_id": stream.job.id, "queue": queue},
            )  # fmt: skip

    def _signal_flushed(self) -> None:
        flushed, self._flushed = self._flushed, asyncio.Event()
        flushed.set()
