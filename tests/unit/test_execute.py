"""Running one job without Redis: outcomes, timeouts, thread pool, current_job, odd exceptions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

import jobd
from jobd.model import encode_payload
from jobd.serializer import JsonSerializer
from jobd.worker.runner import ClaimedJob, Outcome, Runner


@pytest.fixture
def runner() -> Iterator[Runner]:
    with ThreadPoolExecutor(2) as executor:
        serializer = JsonSerializer()
        yield Runner(serializer, serializer, executor, {"db": "pool"})


def claimed(*args: Any, payload: bytes | None = None, **kwargs: Any) -> ClaimedJob:
    return ClaimedJob(
        id="j1",
        queue="default",
        token="w:1",
        function="fn",
        payload=payload if payload is not None else encode_payload(JsonSerializer(), args, kwargs),
        tries=2,
        lost=0,
        max_tries=None,
        timeout=None,
        enqueued_at=datetime.now(UTC),
        priority=0,
    )


async def run(runner: Runner, job: ClaimedJob, function: Any, timeout: float | None = None) -> Any:
    return await runner.run(
        job,
        function,
        is_async=asyncio.iscoroutinefunction(function),
        max_tries=3,
        timeout=timeout,
    )


async def test_async_success_with_context(runner: Runner) -> None:
    async def function(a: int, *, b: int) -> dict[str, Any]:
        job = jobd.current_job()
        return {"sum": a + b, "try": job.try_number, "max": job.max_tries, "state": job.state}

    result = await run(runner, claimed(1, b=2), function)
    assert result.outcome == Outcome.SUCCEEDED
    assert result.value == b'{"sum":3,"try":2,"max":3,"state":{"db":"pool"}}'


async def test_sync_function_runs_in_a_thread_with_context(runner: Runner) -> None:
    def function() -> list[Any]:
        return [threading.current_thread() is threading.main_thread(), jobd.current_job().id]

    result = await run(runner, claimed(), function)
    assert result.value == b'[false,"j1"]'


async def test_timeout(runner: Runner) -> None:
    async def function() -> None:
        await asyncio.sleep(10)

    result = await run(runner, claimed(), function, timeout=0.05)
    assert result.outcome == Outcome.TIMED_OUT and not result.final
    assert result.error and result.error.message == "fn timed out after 0.05 s"


async def test_timeout_error_raised_by_the_job_is_a_plain_failure(runner: Runner) -> None:
    async def function() -> None:
        raise TimeoutError("upstream API timed out")

    result = await run(runner, claimed(), function, timeout=5)
    assert result.outcome == Outcome.FAILED
    assert result.error and result.error.message == "upstream API timed out"


async def test_sync_timeout_does_not_wait_for_the_thread(runner: Runner) -> None:
    def function() -> None:
        time.sleep(0.5)

    result = await run(runner, claimed(), function, timeout=0.05)
    assert result.outcome == Outcome.TIMED_OUT


@pytest.mark.parametrize(
    "error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit(), asyncio.CancelledError()]
)
async def test_base_exceptions_from_the_job_are_failures(
    runner: Runner, error: BaseException
) -> None:
    async def function() -> None:
        raise error

    result = await run(runner, claimed(), function)
    assert result.outcome == Outcome.FAILED and not result.final
    assert result.error and result.error.type == type(error).__name__


async def test_cancellation_by_the_worker_propagates(runner: Runner) -> None:
    started = asyncio.Event()

    async def function() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(run(runner, claimed(), function))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancellation_by_the_worker_propagates_under_a_timeout_too(runner: Runner) -> None:
    started = asyncio.Event()

    async def function() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(run(runner, claimed(), function, timeout=60))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_job_that_swallows_its_timeout_keeps_its_value(runner: Runner) -> None:
    """As under asyncio.timeout: the value stands, and the task is not left cancelling."""

    async def function() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "cleaned up"
        return "slept"

    async def run_and_report() -> tuple[Any, int]:
        result = await run(runner, claimed(), function, timeout=0.05)
        return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    result, cancelling = await asyncio.create_task(run_and_report())
    assert result.outcome == Outcome.SUCCEEDED and result.value == b'"cleaned up"'
    assert cancelling == 0


async def test_a_job_that_turns_its_timeout_into_an_error_fails_with_it(runner: Runner) -> None:
    async def function() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ValueError("gave up") from None

    async def run_and_report() -> tuple[Any, int]:
        result = await run(runner, claimed(), function, timeout=0.05)
        return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    result, cancelling = await asyncio.create_task(run_and_report())
    assert result.outcome == Outcome.FAILED and result.error.type == "ValueError"
    assert cancelling == 0


async def test_retry_request(runner: Runner) -> None:
    async def function() -> None:
        raise jobd.Retry(delay=2.5)

    result = await run(runner, claimed(), function)
    assert (result.outcome, result.retry_delay) == (Outcome.RETRY, 2.5)


async def test_wrong_arguments_are_final(runner: Runner) -> None:
    async def function(a: int) -> int:
        return a

    result = await run(runner, claimed(1, 2), function)
    assert result.final and result.error
    assert result.error.message.startswith("arguments do not match fn(): too many positional")


async def test_undecodable_payload_is_final(runner: Runner) -> None:
    async def function() -> None:
        raise AssertionError("must not run")

    result = await run(runner, claimed(payload=b"not json"), function)
    assert result.final and result.error and result.error.type == "PayloadError"


async def test_traceback_is_capped(runner: Runner) -> None:
    async def function() -> None:
        raise ValueError("x" * 100_000)

    result = await run(runner, claimed(), function)
    assert result.error and len(result.error.traceback) < 17_000
    assert "[… traceback cut …]" in result.error.traceback
    assert len(result.error.message) < 4200 and result.error.message.endswith("[… cut …]")
