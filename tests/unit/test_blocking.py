"""Naming the async job that blocked the event loop (jobd.blocking; chaos scenario F16)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from datetime import UTC, datetime

import pytest

from jobd.blocking import watch_blocking
from jobd.context import JobContext, set_current_job


def in_job(name: str = "slow") -> None:
    set_current_job(
        JobContext(
            id="j1", function=name, queue="default", try_number=1, max_tries=1,
            enqueued_at=datetime.now(UTC), deadline=None,
        )
    )  # fmt: skip


async def blocks(seconds: float) -> str:
    await asyncio.sleep(0)
    time.sleep(seconds)  # noqa: ASYNC251 - the bug being reported
    await asyncio.sleep(0)
    return "done"


async def test_a_step_longer_than_the_threshold_is_logged_with_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    in_job()
    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        assert await watch_blocking(blocks, 0.05)(0.1) == "done"
    (record,) = caplog.records
    assert "job j1 (slow) blocked the event loop for 0.1s" in record.getMessage()
    assert record.event == "loop_blocked"  # type: ignore[attr-defined]


async def test_awaiting_jobs_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    in_job()

    async def sleeps() -> int:
        for _ in range(3):
            await asyncio.sleep(0.03)
        return 3

    with caplog.at_level(logging.WARNING, logger="jobd.jobs"):
        assert await watch_blocking(sleeps, 0.02)() == 3
    assert caplog.records == []


async def test_exceptions_and_cancellation_pass_through_unchanged() -> None:
    in_job()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await watch_blocking(fails, 1.0)()

    cleaned_up = asyncio.Event()

    async def waits() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.set()

    task = asyncio.create_task(watch_blocking(waits, 1.0)())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up.is_set()


async def test_the_wrapper_keeps_the_signature_for_argument_checks() -> None:
    async def job(a: int, *, b: str = "x") -> None:
        return None

    assert str(inspect.signature(watch_blocking(job, 1.0))) == str(inspect.signature(job))
    assert inspect.iscoroutinefunction(watch_blocking(job, 1.0))
