"""Naming the job that blocked the event loop: an `async def` job that calls blocking code (time.sleep,
a synchronous HTTP client) stops heartbeats and every other job of the worker. Each step of an async
job's coroutine (the code between two awaits) is timed; a step longer than the threshold is logged
with the job's id and function, once it ends. Two clock reads per step: no cost worth measuring."""

from __future__ import annotations

import functools
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from jobd.context import current_job
from jobd.registry import RegisteredFunction

T = TypeVar("T")
logger = logging.getLogger("jobd.jobs")


def _report(seconds: float) -> None:
    job = current_job()
    logger.warning(
        "job %s (%s) blocked the event loop for %.1fs: heartbeats and other jobs waited meanwhile "
        "(make it a plain def, or move the blocking call into await asyncio.to_thread(...))",
        job.id, job.function, seconds,
        extra={"event": "loop_blocked", "job_id": job.id, "function": job.function,
               "queue": job.queue, "duration": seconds},
    )  # fmt: skip


@types.coroutine
def _stepped(coroutine: Coroutine[Any, Any, T], threshold: float) -> Generator[Any, Any, T]:
    """Drive `coroutine` as `await` would, timing each step."""
    value: Any = None
    error: BaseException | None = None
    while True:
        started = time.monotonic()
        try:
            yielded = coroutine.send(value) if error is None else coroutine.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            if (seconds := time.monotonic() - started) > threshold:
                _report(seconds)
        value, error = None, None
        try:
            value = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as thrown:  # noqa: BLE001 - handed to the job's coroutine, as await does
            error = thrown


def watch_blocking(
    function: Callable[..., Coroutine[Any, Any, T]], threshold: float
) -> Callable[..., Coroutine[Any, Any, T]]:
    """`function` whose calls report steps longer than `threshold` seconds (same signature)."""

    @functools.wraps(function)
    async def watched(*args: Any, **kwargs: Any) -> T:
        return await _stepped(function(*args, **kwargs), threshold)

    return watched


def watch_functions(
    functions: Mapping[str, RegisteredFunction], threshold: float
) -> dict[str, RegisteredFunction]:
    """The registry with every async job function watched (plain defs run in threads anyway)."""
    return {
        name: replace(registered, func=watch_blocking(registered.func, threshold))
        if registered.is_async
        else registered
        for name, registered in functions.items()
    }
