"""Shared fixtures: private redis-server processes (tests never use the shared 6379)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis

from jobd.client import Client
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the whole session (AOF off for speed); isolate with ``key_prefix``."""
    with RedisServer(tmp_path_factory.mktemp("redis-session"), appendonly=False) as server:
        yield server


@pytest.fixture
def key_prefix() -> str:
    """A unique key prefix per test, so tests sharing ``redis_server`` do not collide."""
    return "t" + uuid4().hex[:10]


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session server."""
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh server with AOF on (everysec) for fault tests: kill/pause/restart freely."""
    with RedisServer(tmp_path / "redis", appendonly=True, appendfsync="everysec") as server:
        yield server


@pytest.fixture
def ledger(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """The ledger that test jobs write to (the session server, never faulted by tests)."""
    monkeypatch.setenv("LEDGER_URL", redis_server.url)
    return redis_server.client()


@pytest.fixture
async def client(redis_url: str, key_prefix: str) -> AsyncIterator[Client]:
    """A producer client on the session server, isolated by the test's key prefix."""
    async with Client(redis_url, key_prefix=key_prefix) as jobs:
        yield jobs
