"""What `jobd --processes N` runs: the configuration checked once, then the supervisor."""

from __future__ import annotations

import asyncio
import sys

from jobd.config import loader as config
from jobd.errors import ConfigError
from jobd.supervisor.group import Supervisor, worker_command


def supervise(
    path: str, processes: int, *, burst: bool, log_level: str | None, log_format: str | None
) -> int:
    """Run `processes` workers on the configuration at `path`; returns the exit code.

    The file is loaded and checked here, before any worker starts: a configuration error raises
    ConfigError (exit 78, the message of a single worker). The job functions are imported by each
    worker, not here: a function that cannot be imported makes the workers exit 78, which stops
    the group with 78 too."""
    settings = config.load(path)
    if settings.redis.embedded:
        raise ConfigError(
            [
                'redis.url = "embedded" runs a private Redis for one process: --processes needs a '
                "Redis the workers share (or run one process: --processes 1)"
            ]
        )
    for warning in config.warnings_for(settings):
        print(f"warning: {warning}", file=sys.stderr)
    command = worker_command(path, burst=burst, log_level=log_level, log_format=log_format)
    supervisor = Supervisor(settings, command, processes=processes, burst=burst)
    return asyncio.run(supervisor.run())
