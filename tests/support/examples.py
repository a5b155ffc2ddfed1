"""What the tests of the examples (and of the documentation's examples) share: an example's
jobs.toml moved onto the suite's Redis, and the example's web app served by uvicorn."""

from __future__ import annotations

import re
import signal
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from tests.support.daemon import Daemon


def on_suite_redis(
    source: Path, directory: Path, redis_url: str, key_prefix: str, **sections: dict[str, Any]
) -> Path:
    """`source` (a jobs.toml) with its [redis] on the suite's server instead of an embedded one,
    and any `sections` replaced (e.g. http={"listen": "127.0.0.1:0"}); written into `directory`."""
    document = tomllib.loads(source.read_text())
    document["redis"] = {"url": redis_url, "key_prefix": key_prefix}
    document.update(sections)
    path = directory / "jobs.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@contextmanager
def uvicorn_app(make_daemon: Callable[..., Daemon], app: str, config: Path) -> Iterator[str]:
    """`uvicorn <app>` on a free port, told the config by JOBD_CONFIG; yields its base URL. It
    must shut down cleanly (its lifespan closes the client) when the block ends."""
    command = [sys.executable, "-m", "uvicorn", app, "--port", "0"]
    server = make_daemon(None, command=command, env={"JOBD_CONFIG": str(config)}).start()
    server.wait_for_log("Uvicorn running on")
    match = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", server.log_text())
    assert match, server.log_text()
    yield match[1]
    server.terminate()
    # uvicorn shuts down, then ends by the signal it caught (-15) or, in older versions, with 0
    assert server.wait_exit() in (0, -signal.SIGTERM), server.log_text()
    assert "Application shutdown complete" in server.log_text()
