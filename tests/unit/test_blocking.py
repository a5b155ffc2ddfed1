"""Naming the async job that blocked the event loop (jobd.worker.blocking; chaos scenario F16)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from jobd.worker.blocking import BlockWatch
from jobd.worker.runner import ClaimedJob
from tests.support.wait import async_wait_until

THRESHOLD = 0.05

JOB = ClaimedJob(
    id="j1", queue="default", token="t", function="slow", payload=b"[[],{}]", tries=1, lost=0,
    max_tries=None, timeout=None, enqueued_at=datetime.now(UTC), priority=0,
)  # fmt: skip


class Jobs:
    """The job_of of a worker that runs JOB in `task`."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None

    def __call__(self, task: asyncio.Task[Any]) -> ClaimedJob | None:
        return JOB if task is self.task else None


@pytest.fixture
async def watched() -> AsyncIterator[tuple[BlockWatch, Jobs]]:
    jobs = Jobs()
    watch = BlockWatch(THRESHOLD, jobs)
    watch.start()
    yield watch, jobs
    watch.stop()


def reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "loop_blocked"]


async def blocks(seconds: float) -> str:
    await asyncio.sleep(0)
    time.sleep(seconds)  # noqa: ASYNC251 - the bug being reported
    await asyncio.sleep(0)
    return "done"


async def test_a_job_holding_the_loop_past_the_threshold_is_named(
    watched: tuple[BlockWatch, Jobs], caplog: pytest.LogCaptureFixture
) -> None:
    _, jobs = watched
    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        jobs.task = asyncio.create_task(blocks(0.3))
        assert await jobs.task == "done"
        await async_wait_until(lambda: reports(caplog) != [], timeout=5, message="no report")
    (record,) = reports(caplog)
    message = record.getMessage()
    assert message.startswith("job j1 (slow) blocked the event loop for "), message
    seconds = float(re.findall(r"for ([0-9.]+)s", message)[0])
    # the timer's lateness: the block less at most one tick interval, and no more than the block
    assert 0.3 - THRESHOLD <= seconds <= 0.3 + 0.1, message
    assert vars(record)["job_id"] == "j1"
    assert vars(record)["queue"] == "default"


async def test_each_block_is_reported_once(
    watched: tuple[BlockWatch, Jobs], caplog: pytest.LogCaptureFixture
) -> None:
    _, jobs = watched

    async def blocks_twice() -> None:
        time.sleep(0.2)  # noqa: ASYNC251 - the bug being reported
        await asyncio.sleep(THRESHOLD)
        time.sleep(0.2)  # noqa: ASYNC251 - the bug being reported

    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        jobs.task = asyncio.create_task(blocks_twice())
        await jobs.task
        await async_wait_until(lambda: len(reports(caplog)) >= 2, timeout=5, message="2 reports")
        # more ticks pass: nothing is reported again
        ticks = asyncio.get_running_loop().time() + 4 * THRESHOLD
        await async_wait_until(lambda: asyncio.get_running_loop().time() >= ticks, timeout=5)
    assert len(reports(caplog)) == 2


async def test_awaiting_jobs_are_not_reported(
    watched: tuple[BlockWatch, Jobs], caplog: pytest.LogCaptureFixture
) -> None:
    _, jobs = watched

    async def sleeps() -> int:
        for _ in range(6):
            await asyncio.sleep(THRESHOLD / 2)
        return 6

    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        jobs.task = asyncio.create_task(sleeps())
        assert await jobs.task == 6
    assert reports(caplog) == []


async def test_a_block_outside_any_job_names_no_job(
    watched: tuple[BlockWatch, Jobs], caplog: pytest.LogCaptureFixture
) -> None:
    watch, _ = watched
    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        await asyncio.create_task(blocks(0.3))  # not the job's task
        ticks = asyncio.get_running_loop().time() + 4 * watch.interval
        await async_wait_until(lambda: asyncio.get_running_loop().time() >= ticks, timeout=5)
    assert reports(caplog) == []


async def test_stop_ends_the_thread() -> None:
    watch = BlockWatch(THRESHOLD, Jobs())
    before = {t.ident for t in threading.enumerate()}
    watch.start()
    (thread,) = [t for t in threading.enumerate() if t.ident not in before]
    assert thread.name == "jobd-blockwatch"
    assert thread.daemon
    watch.stop()
    await async_wait_until(lambda: not thread.is_alive(), timeout=5, message="thread ended")
