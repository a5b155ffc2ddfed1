"""Batching of job outcomes: jobs that end while a finish call is in flight are stored together in the
next call, so a busy worker makes one round trip for many jobs and an idle one adds no delay."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict

from jobd.worker.resilience import RedisCaller
from jobd.worker.store import Finish, Store

BATCH_LIMIT = 256
"""Jobs per finish script call: keeps a single script run short (Redis is single-threaded)."""


class Finisher:
    """Collects outcomes per queue and flushes them with one script call per batch."""

    def __init__(self, store: Store, call: RedisCaller) -> None:
        self._store = store
        self._call = call
        self._pending: dict[str, list[tuple[Finish, asyncio.Future[str]]]] = defaultdict(list)
        self._flushing: asyncio.Task[None] | None = None
        self.deadline: float | None = None
        """Set during shutdown: give up on Redis after this monotonic time."""

    async def submit(self, item: Finish) -> str:
        """Store one outcome; returns 'ok', 'stale' (lease lost) or 'replayed'."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[item.job.queue].append((item, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            queue, entries = next(iter(self._pending.items()))
            batch, rest = entries[:BATCH_LIMIT], entries[BATCH_LIMIT:]
            if rest:
                self._pending[queue] = rest
            else:
                del self._pending[queue]
            items = [item for item, _ in batch]
            try:
                replies = await self._call(
                    "finish",
                    functools.partial(self._store.finish, queue, items),
                    deadline=self.deadline,
                )
            except Exception as error:  # noqa: BLE001 - handed to every waiting job
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
