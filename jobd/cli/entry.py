"""The `jobd` command line: argument parsing and exit codes; the work is done elsewhere.

`jobd` / `jobd run` run the worker (jobd.daemon), `jobd check` validates the configuration, and
the operator commands (status, enqueue, job, dead, config; see jobd/cli/parser.py) live in
the other modules of jobd/cli/. Every module behind a command is imported only when that command runs.

Exit codes: 0 ok, 1 operational failure, 2 usage error, 78 configuration or credential error.
Errors are one line on stderr (a configuration error lists every problem), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from jobd.cli.parser import build_parser, parser_for
from jobd.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130

__all__ = ["build_parser", "main"]


def _config_path(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    path: str | None = arguments.config or os.environ.get("JOBD_CONFIG")
    if not path:
        parser.error("no configuration: pass --config FILE or set JOBD_CONFIG")
    return path


def _check(path: str) -> int:
    from jobd.config import loader as config
    from jobd.worker import functions as registry

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
    from jobd import daemon
    from jobd.config import loader as config
    from jobd.ops.systemd import SUPERVISOR_ENV

    settings = config.load(path)
    if SUPERVISOR_ENV in os.environ:  # a worker of `jobd --processes N`
        from jobd.supervisor import child

        parent = child.supervisor_pid(os.environ)
        if parent is not None:
            try:
                settings = child.adopt(settings, parent)
            except child.SupervisorGone as gone:
                print(f"jobd: {gone}", file=sys.stderr)
                return EXIT_FAILURE
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


def _operate(arguments: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run an operator command and turn its errors into an exit code and one line on stderr."""
    import redis

    from jobd.cli.shared import CommandFailed, UsageError
    from jobd.config import loader as config
    from jobd.config.settings import redact_url
    from jobd.errors import (
        DecryptError,
        InvalidJobOption,
        RedisAuthError,
        RedisUnavailable,
        SerializationError,
    )
    from jobd.redis.auth import auth_message, is_auth_error

    prog = parser.prog
    url = "the configured URL"
    try:
        if not arguments.needs_config:
            return int(arguments.handler(arguments, None))
        settings = config.load(_config_path(arguments, parser))
        url = redact_url(settings.redis.url)
        return int(arguments.handler(arguments, settings))
    except (UsageError, InvalidJobOption, SerializationError) as error:
        print(f"{prog}: error: {error} (see {prog} --help)", file=sys.stderr)
        return EXIT_USAGE
    except (CommandFailed, DecryptError) as error:
        print(f"{prog}: {' '.join(str(error).splitlines())}", file=sys.stderr)
        return EXIT_FAILURE
    except RedisAuthError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except RedisUnavailable as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except redis.RedisError as error:
        if is_auth_error(error):
            print(f"{prog}: {auth_message(url, error)}", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(error, redis.ConnectionError | redis.TimeoutError):
            print(f"{prog}: cannot reach Redis at {url}: {error}", file=sys.stderr)
        else:
            print(f"{prog}: Redis at {url} answered an error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except ConfigError:
        raise  # main() prints every problem and exits 78
    except BrokenPipeError:
        # The reader of our output went away (`jobd dead list | head`): not an error to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as error:  # a bug: one line here, the traceback at debug level
        logging.getLogger("jobd.cli").debug("%s failed", prog, exc_info=True)
        print(
            f"{prog}: unexpected error: {type(error).__name__}: {error} "
            "(jobd --log-level debug COMMAND ... shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobd` console script; returns the exit code."""
    parser = parser_for(sys.argv[1:] if argv is None else argv)
    arguments = parser.parse_args(argv)
    from jobd.ops.logs import setup_logging

    setup_logging(arguments.log_level or "info", arguments.log_format or "text")
    # Job modules are imported by path, like uvicorn and celery do: from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        handler = getattr(arguments, "handler", None)
        if handler is not None:
            try:
                return _operate(arguments, arguments.command_parser)
            except KeyboardInterrupt:
                print(f"{arguments.command_parser.prog}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
        path = _config_path(arguments, parser)
        if arguments.command == "check":
            return _check(path)
        if arguments.processes > 1:
            from jobd.supervisor.main import supervise

            return supervise(
                path, arguments.processes, burst=arguments.burst,
                log_level=arguments.log_level, log_format=arguments.log_format,
            )  # fmt: skip
        return _run(path, burst=arguments.burst)
    except ConfigError as error:
        print(f"jobd: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
