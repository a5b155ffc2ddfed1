"""Fixtures of the dashboard's tests: a dashboard served by uvicorn, a headless Chromium driven by
Playwright (Debian's chromium, not a browser Playwright downloads), screenshots, and real jobd
daemons (tests/system/conftest.py's make_daemon) to run jobs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobd.web
from jobd.client import Client
from tests.support.daemon import write_config
from tests.system.conftest import MakeDaemon, make_daemon  # noqa: F401 - the fixture
from tests.web.server import ServedApp

CHROMIUM = os.environ.get("JOBD_TEST_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium (.ci/run installs it)."""
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"

Serve = Callable[..., ServedApp]


@pytest.fixture
def serve(redis_url: str, key_prefix: str) -> Iterator[Serve]:
    """`serve(**create_app options)` serves a dashboard on the test's Redis and key prefix;
    `serve(make_app=...)` serves what `make_app(client)` returns."""
    started: list[ServedApp] = []

    def start(make_app: Callable[[Client], Any] | None = None, **options: Any) -> ServedApp:
        factory = make_app or (lambda client: jobd.web.create_app(client, **options))
        served = ServedApp(factory, redis_url, key_prefix).__enter__()
        started.append(served)
        return served

    yield start
    for served in reversed(started):
        served.__exit__(None, None, None)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots (printed with -s or on failure)."""
    path = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots: {path}")
    return path


@pytest.fixture
def web_config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """A jobs.toml on the test's Redis with the dashboard tests' functions."""
    return write_config(
        tmp_path, redis_url, key_prefix,
        functions={"flaky": {"path": "tests.web.jobs:flaky"}},
        worker={"queues": ["default", "email"]},
    )  # fmt: skip


def run_burst(make: MakeDaemon, config: Path) -> None:
    """Run a worker until nothing is queued (`jobd run --burst`)."""
    daemon = make(config, "--burst").start()
    assert daemon.wait_exit(60) == 0, daemon.log_text()


def chromium_or_skip() -> str:
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} not found: .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
