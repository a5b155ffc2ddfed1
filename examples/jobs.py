"""Example job functions used by config/jobs.toml: run `jobd --config config/jobs.toml`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jobd


async def startup(state: dict[str, Any]) -> None:
    """Runs once per worker before the first job: put shared clients and pools into `state`."""
    state["greeting"] = "Hello"


async def shutdown(state: dict[str, Any]) -> None:
    """Runs once per worker after the last job."""
    state.clear()


async def send_email(address: str, subject: str = "Hi") -> dict[str, str]:
    """Pretend to send an e-mail (an I/O-bound coroutine)."""
    await asyncio.sleep(0.05)
    job = jobd.current_job()
    return {"to": address, "subject": f"{job.state['greeting']}: {subject}", "job": job.id}


def resize_image(width: int, height: int) -> str:
    """A blocking function: jobd runs plain `def` functions in a thread pool."""
    time.sleep(0.1)
    return f"resized to {width}x{height}"


async def flaky(fail_times: int = 2) -> str:
    """Fails on its first `fail_times` tries, then succeeds: shows retries with backoff."""
    job = jobd.current_job()
    if job.try_number <= fail_times:
        raise RuntimeError(f"try {job.try_number} failed on purpose")
    return f"succeeded on try {job.try_number}"


async def cleanup() -> int:
    """A nightly clean-up."""
    return 0
