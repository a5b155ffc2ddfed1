"""Job functions used by the tests. Jobs record what they did in the ledger Redis (LEDGER_URL in the
environment, or the URL in the job's kwargs), which the tests read; the system under test is never
asked whether a job ran."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import redis

import jobd

_ledgers: dict[str, redis.Redis] = {}


def _ledger() -> redis.Redis:
    url = os.environ["LEDGER_URL"]
    client = _ledgers.get(url)
    if client is None:
        client = _ledgers[url] = redis.Redis.from_url(url)
    return client


def _record(event: str, key: str) -> None:
    job = jobd.current_job()
    _ledger().rpush(key, f"{event}|{job.id}|{job.try_number}|{os.getpid()}|{time.time():.6f}")


async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def sync_echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    job = jobd.current_job()
    return {"args": list(args), "kwargs": kwargs, "job": job.id, "try": job.try_number}


async def context() -> dict[str, Any]:
    job = jobd.current_job()
    return {
        "id": job.id,
        "function": job.function,
        "queue": job.queue,
        "try": job.try_number,
        "max_tries": job.max_tries,
        "has_deadline": job.deadline is not None,
        "state": sorted(job.state),
    }


async def stream_tokens(
    count: int, fail_on_try: int = 0, gate: str | None = None, pause: float = 0.0
) -> int:
    """Emit `count` "token" events (and a progress report half way); with `gate`, wait after the
    first token until the ledger list `gate` gets an item (on the first try only)."""
    job = jobd.current_job()
    for i in range(count):
        await job.emit("token", {"i": i, "try": job.try_number})
        if i == count // 2:
            await job.progress(0.5, "half way")
        if gate is not None and i == 0 and job.try_number == 1:
            await _wait_for(gate)
        if pause:
            await asyncio.sleep(pause)
    if job.try_number == fail_on_try:
        raise RuntimeError(f"failing try {job.try_number}")
    return count


async def _wait_for(gate: str, seconds: int = 60) -> None:
    """Until the ledger list `gate` gets an item (short BLPOPs: below the socket timeout)."""
    for _ in range(seconds):
        if await asyncio.to_thread(_ledger().blpop, [gate], 1):
            return


async def parents_echo(arg: Any) -> dict[str, Any]:
    """`arg` and what parent_results() gave, a failed parent as "JobFailed: type: message"."""
    results = await jobd.current_job().parent_results()
    shown = {
        job_id: f"JobFailed: {value.error_type}: {value.message}"
        if isinstance(value, jobd.JobFailed)
        else value
        for job_id, value in results.items()
    }
    return {"arg": arg, "parents": shown}


async def emit_problems() -> list[str]:
    """What emit and progress refuse, as "Type: message" lines."""
    job = jobd.current_job()
    calls = [
        lambda: job.emit("started"),
        lambda: job.emit("two words"),
        lambda: job.emit("big", "x" * 100_000),
        lambda: job.emit("odd", {"set": {1, 2}}),
        lambda: job.progress(1.5),
    ]
    problems = []
    for call in calls:
        try:
            await call()
        except Exception as error:  # noqa: BLE001 - reported to the test
            problems.append(f"{type(error).__name__}: {error}")
    return problems


async def record(key: str) -> str:
    _record("start", key)
    _record("end", key)
    return "ok"


async def sleep_record(seconds: float, key: str) -> str:
    _record("start", key)
    await asyncio.sleep(seconds)
    _record("end", key)
    return "slept"


def sync_sleep_record(seconds: float, key: str) -> str:
    _record("start", key)
    time.sleep(seconds)
    _record("end", key)
    return "slept"


async def fail(message: str = "boom") -> None:
    raise ValueError(message)


async def fail_until(succeed_on: int) -> int:
    job = jobd.current_job()
    if job.try_number < succeed_on:
        raise RuntimeError(f"try {job.try_number} fails")
    return job.try_number


async def retry_with_delay(delay: float) -> int:
    job = jobd.current_job()
    if job.try_number == 1:
        raise jobd.Retry(delay=delay)
    return job.try_number


async def throttled(key: str, times: int, retry_after: float, limit: str | None = None) -> int:
    """Raise jobd.Throttled on the first `times` runs (counted in the ledger), then succeed."""
    runs = int(_ledger().incr(key))
    if runs <= times:
        raise jobd.Throttled(retry_after, limit=limit)
    return runs


async def report_cost(cost: int) -> int:
    """Tell the worker the job's real cost, as an LLM call would once its reply counted tokens."""
    await jobd.current_job().set_cost(cost)
    return cost


async def sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def not_serializable() -> object:
    return object()


async def startup(state: dict[str, Any]) -> None:
    state["started"] = True


async def shutdown(state: dict[str, Any]) -> None:
    path = os.environ.get("SHUTDOWN_MARKER")
    if path:
        Path(path).write_text(str(sorted(state)))  # noqa: ASYNC240 - a tiny test marker


async def block_loop(seconds: float) -> str:
    """Blocks the worker's event loop (a bug users make): /healthz must notice."""
    time.sleep(seconds)  # noqa: ASYNC251 - blocking on purpose
    return "unblocked"


# -- the chaos suite's jobs (tests/chaos) ---------------------------------------------------------


def _identity() -> str:
    """Who ran this try: "pid|try". Returned as the result, so the checker can tell whose result
    was stored when two runs of one job overlapped."""
    return f"{os.getpid()}|{jobd.current_job().try_number}"


async def chaos(key: str, seconds: float = 0.0) -> str:
    """Ledger job of the chaos suite: `start`, an optional (async) sleep, `end`; returns its run."""
    _record("start", key)
    if seconds:
        await asyncio.sleep(seconds)
    _record("end", key)
    return _identity()


def sync_chaos(key: str, seconds: float = 0.0) -> str:
    """`chaos` as a plain def (the worker's thread pool runs it)."""
    _record("start", key)
    time.sleep(seconds)
    _record("end", key)
    return _identity()


async def block_chaos(key: str, seconds: float, blocking_tries: int = 1) -> str:
    """`chaos` that blocks the event loop while it sleeps (a bug users make), on its first
    `blocking_tries` tries; later tries do not sleep."""
    _record("start", key)
    if jobd.current_job().try_number <= blocking_tries:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking on purpose
    _record("end", key)
    return _identity()


async def crash_now(key: str | None = None) -> None:
    """A poison pill: records its start, then ends the worker process at once (like an OOM kill)."""
    if key is not None:
        _record("start", key)
    os._exit(137)
