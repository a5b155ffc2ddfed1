"""Running a jobd Worker inside the test's own event loop, on settings built for the test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import tomli_w

from jobd.config import loader as config
from jobd.config.settings import Settings
from jobd.worker.functions import build_registry
from jobd.worker.lifecycle import State, Worker
from tests.support.wait import async_wait_until

TEST_FUNCTIONS = (
    "echo",
    "sync_echo",
    "context",
    "record",
    "sleep_record",
    "sync_sleep_record",
    "fail",
    "fail_until",
    "retry_with_delay",
    "sleep",
    "not_serializable",
    "block_loop",
    "stream_tokens",
    "emit_problems",
    "parents_echo",
)


def settings_for(
    url: str,
    prefix: str,
    *,
    worker: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    functions: dict[str, dict[str, Any]] | None = None,
    hooks: dict[str, str] | None = None,
    cron: list[dict[str, Any]] | None = None,
    limits: dict[str, dict[str, Any]] | None = None,
    events: dict[str, Any] | None = None,
    encryption_keys: Sequence[str] | None = None,
) -> Settings:
    """Settings through the real loader, with short leases and fast retries for tests.
    `encryption_keys` become worker.encryption_keys, read from the environment as the loader
    demands (variables given to the loader only, not set in the process)."""
    document: dict[str, Any] = {
        "redis": {"url": url, "key_prefix": prefix},
        "worker": {
            "queues": ["default"],
            "concurrency": 10,
            "lease_timeout": "1s",
            "drain_timeout": "2s",
            **(worker or {}),
        },
        "defaults": {"retry": {"base": "10ms", "max": "50ms", "jitter": False}, **(defaults or {})},
        "functions": {name: {"path": f"tests.jobs_for_tests:{name}"} for name in TEST_FUNCTIONS},
    }
    for name, overrides in (functions or {}).items():
        document["functions"].setdefault(name, {"path": f"tests.jobs_for_tests:{name}"})
        document["functions"][name].update(overrides)
    if hooks:
        document["hooks"] = hooks
    if cron:
        document["cron"] = cron
    if limits:
        document["limits"] = limits
    if events:
        document["events"] = events
    environ = dict(os.environ)
    if encryption_keys is not None:
        names = [f"JOBD_TEST_ENCRYPTION_KEY_{index}" for index in range(len(encryption_keys))]
        document["worker"]["encryption_keys"] = ["${" + name + "}" for name in names]
        environ.update(zip(names, encryption_keys, strict=True))
    return config.loads(tomli_w.dumps(document), source="test.toml", environ=environ)


@asynccontextmanager
async def running_worker(settings: Settings, **options: Any) -> AsyncIterator[Worker]:
    """A Worker running in a task of the current loop; drained and awaited on exit."""
    functions, problems = build_registry(settings)
    assert not problems, problems
    worker = Worker(settings, functions, **options)
    task = asyncio.create_task(worker.run())
    await async_wait_until(
        lambda: worker.state == State.RUNNING or task.done(), message="worker did not start"
    )
    try:
        yield worker
    finally:
        worker.shutdown.stop.set()
        done, _ = await asyncio.wait([task], timeout=30)
        if not done:
            stuck = [f"{t.get_name()}: {t.get_stack(limit=5)}" for t in asyncio.all_tasks()]
            task.cancel()
            raise AssertionError("worker did not stop within 30 s; tasks:\n" + "\n".join(stuck))
        task.result()
