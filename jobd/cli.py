"""The `jobd` command line: argument parsing and exit codes; the work is done elsewhere.

Exit codes: 0 ok, 1 operational failure, 2 usage error, 78 configuration or credential error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from jobd import __version__
from jobd.errors import ConfigError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 78

DESCRIPTION = """\
jobd runs background jobs for async Python from Redis.

Without a command, jobd runs the worker daemon (the same as `jobd run`) on the configuration given
by --config or the JOBD_CONFIG environment variable.
"""

EPILOG = """\
examples:
  jobd --config jobs.toml              run the worker until SIGTERM/SIGINT (drains first)
  jobd run --config jobs.toml --burst  run until the queues are empty, then exit
  jobd check --config jobs.toml        validate the file and import every function and hook

exit codes: 0 ok, 1 failure, 2 usage error, 78 configuration or Redis credential error
"""


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help="the jobs.toml to use (default: $JOBD_CONFIG)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default,
        help="least severe log level shown (default: info)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=default,
        help="text lines for people, or one JSON object per line (default: text)",
    )


def _run_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    parser.add_argument(
        "--burst",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="process jobs until no job is queued, scheduled or running, then exit 0",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jobd {__version__}")
    _common(parser, suppress=False)
    _run_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the worker daemon (the default)",
        description="Run the worker: take jobs from worker.queues until SIGTERM or SIGINT, then "
        "drain (running jobs get drain_timeout to finish; the rest are requeued without losing a "
        "try). A second signal stops the wait.",
    )
    _common(run, suppress=True)
    _run_options(run, suppress=True)
    check = commands.add_parser(
        "check",
        help="validate the configuration and import every function and hook",
        description="Report every problem of the configuration at once (exit 78), or exit 0.",
    )
    _common(check, suppress=True)
    return parser


def _config_path(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    path: str | None = arguments.config or os.environ.get("JOBD_CONFIG")
    if not path:
        parser.error("no configuration: pass --config FILE or set JOBD_CONFIG")
    return path


def _check(path: str) -> int:
    from jobd import config, registry

    settings = config.load(path)
    problems = registry.check(settings)
    if problems:
        raise ConfigError(problems)
    for warning in config.warnings_for(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{path}: OK ({len(settings.functions)} functions, "
        f"{sum(hook is not None for hook in (settings.hooks.startup, settings.hooks.shutdown))} "
        f"hooks, {len(settings.cron)} cron entries)"
    )
    return EXIT_OK


def _run(path: str, *, burst: bool) -> int:
    from jobd import config, daemon

    settings = config.load(path)
    for warning in config.warnings_for(settings):
        print(f"warning: {warning}", file=sys.stderr)
    code = daemon.run(settings, burst=burst)
    lingering = [thread for thread in threading.enumerate() if thread.name.startswith("jobd-sync")]
    if lingering:
        # Plain-def jobs cannot be cancelled; drain already requeued them. Python would join their
        # threads at exit and hold the process (and a systemd stop) until they return.
        logging.getLogger("jobd.daemon").warning(
            "exiting with %d job threads still running (their jobs were requeued)", len(lingering)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobd` console script; returns the exit code."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    from jobd.logs import setup_logging

    setup_logging(arguments.log_level or "info", arguments.log_format or "text")
    path = _config_path(arguments, parser)
    # Job modules are imported by path, like uvicorn and celery do: from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if arguments.command == "check":
            return _check(path)
        return _run(path, burst=arguments.burst)
    except ConfigError as error:
        print(f"jobd: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
