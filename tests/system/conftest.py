"""Fixtures shared by the system tests (the daemon as a real process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon
from tests.support.redis_server import RedisServer

MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path, redis_server: RedisServer) -> Iterator[MakeDaemon]:
    """Factory of daemons with the session server as ledger; kills leftovers, prints logs."""
    started: list[Daemon] = []

    def make(config: Path | None, *args: str, **kwargs: Any) -> Daemon:
        kwargs.setdefault("ledger_url", redis_server.url)
        kwargs.setdefault("log_dir", tmp_path)
        daemon = Daemon(config, *args, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.close()
        print(f"===== {daemon!r}\n{daemon.log_text()}")  # shown when the test failed
