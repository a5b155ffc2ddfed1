"""What a driver needs from a library (`Peer`), and the options of one step (`Options`)."""

from __future__ import annotations

import abc
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREPARE_CONCURRENCY = 64


@dataclass(frozen=True)
class Options:
    step: str
    redis_url: str
    counter_url: str
    jobs: int
    concurrency: int
    workers: int
    function: str
    rate: float
    batch: int
    logdir: Path
    tag: str


class NotSupported(Exception):
    """The library has no way to do this step; the message says why."""


class Peer(abc.ABC):
    """What the driver needs from one library. Job functions are named noop, sleep and stamp."""

    name: str = "?"
    # None when `enqueue_bulk` is implemented, else why the library cannot do it
    bulk_reason: str | None = "no batch enqueue API"

    @abc.abstractmethod
    async def open(self, redis_url: str) -> None:
        """Create the producer (connect)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the producer."""

    @abc.abstractmethod
    async def enqueue(self, function: str, i: int) -> None:
        """Enqueue one job `function(i)` with the library's normal single-job call."""

    def enqueue_blocking(self, function: str, i: int) -> None:
        """The enqueue of a library whose enqueue is a synchronous call (W1c runs it in threads);
        NotImplementedError for the async libraries."""
        raise NotImplementedError

    async def enqueue_bulk(self, function: str, indices: Sequence[int]) -> None:
        raise NotSupported(self.bulk_reason or "no batch enqueue API")

    @abc.abstractmethod
    def worker_command(self, options: Options) -> list[str]:
        """argv of one worker process (the library's own CLI) with `options.concurrency`."""

    def group_command(self, options: Options) -> list[str] | None:
        """argv of one command that runs `options.workers` worker processes itself (the library's
        own multi-process option, W6), or None: then `worker_command` is started that many times."""
        return None

    async def after_drain(self, options: Options) -> dict[str, Any]:
        """Figures the library adds to a drain's result once the workers stopped (W7L)."""
        return {}

    def bin(self, script: str) -> str:
        """A console script of this venv."""
        return str(Path(sys.executable).parent / script)

    async def prepare(self, function: str, n: int, batch: int) -> None:
        """Queue n jobs as fast as the library allows (untimed set-up for the drain steps)."""
        if self.bulk_reason is None:
            for start in range(0, n, batch):
                await self.enqueue_bulk(function, range(start, min(n, start + batch)))
            return
        for start in range(0, n, PREPARE_CONCURRENCY):
            stop = min(n, start + PREPARE_CONCURRENCY)
            await asyncio.gather(*(self.enqueue(function, i) for i in range(start, stop)))
