"""The argument parser of the `jobd` command, and what each operator command calls.

Each operator command's parser sets `handler` (called with the arguments and the loaded settings),
`command_parser` (for its error messages) and `needs_config`. The handlers import their module only
when they run, so `jobd --help` and `jobd run` load nothing they do not use.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

from jobd import __version__
from jobd.cli.options import config_option, json_option, operator, queue_option
from jobd.config.settings import Settings

DESCRIPTION = """\
jobd runs background jobs for async Python from Redis.

Without a command, jobd runs the worker daemon (the same as `jobd run`) on the configuration given
by --config or the JOBD_CONFIG environment variable. The other commands inspect and operate the
queues of that configuration; `jobd COMMAND --help` explains each one.
"""

EPILOG = """\
examples:
  jobd --config jobs.toml              run the worker until SIGTERM/SIGINT (drains first)
  jobd run --config jobs.toml --burst  run until the queues are empty, then exit
  jobd --config jobs.toml --processes auto   one worker process per CPU, one supervisor
  jobd check --config jobs.toml        validate the file and import every function and hook
  jobd status                          jobs per queue and state, live workers (JOBD_CONFIG set)
  jobd enqueue send_email '["a@example.com"]' --kwargs '{"subject": "Hi"}' --wait 30s
  jobd job show JOB_ID                 everything stored about one job
  jobd job follow JOB_ID               its events (progress, output) as they come, until it ends
  jobd dead list                       failed jobs, newest first; `dead retry|purge` act on them
  jobd config init                     write a commented jobs.toml to start from
  jobd keygen                          print a new key for encrypted payloads
  jobd web                             the web dashboard on http://127.0.0.1:9181/ (jobd[web])

exit codes: 0 ok, 1 failure, 2 usage error, 78 configuration or Redis credential error
"""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line: `jobd status: error: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    config_option(parser, default)
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
    parser.add_argument(
        "--processes",
        type=_processes,
        metavar="N",
        default=argparse.SUPPRESS if suppress else 1,
        help="run N worker processes under a supervisor that restarts them, drains them all on "
        "SIGTERM and serves one /healthz, /readyz and /metrics on http.listen; 'auto' is one per "
        "CPU (default: 1, the worker alone; docs/processes.md)",
    )


def _processes(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes or 'auto', not {text!r}")
    return int(text)


# -- handlers: arguments -> jobd.cli.* ---------------------------------------------------------


def _status(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import status

    return status.status(settings, restrict=arguments.queues, as_json=arguments.json)


def _config_show(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import config as config_commands

    return config_commands.show(settings)


def _config_init(arguments: argparse.Namespace, settings: Settings | None) -> int:
    from jobd.cli import config as config_commands

    return config_commands.init(arguments.path)


def _keygen(arguments: argparse.Namespace, settings: Settings | None) -> int:
    from jobd.cli import keygen

    return keygen.keygen()


# -- the parser -------------------------------------------------------------------------------


def build_parser(*, operators: bool = True) -> argparse.ArgumentParser:
    """The whole parser, or with `operators=False` only `jobd`, `jobd run` and `jobd check`."""
    parser = Parser(
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
    if not operators:
        return parser
    from jobd.cli import job_commands  # here: a worker's `jobd run` does not build these parsers

    _status_parser(commands)
    job_commands.enqueue_parser(commands)
    job_commands.job_parsers(commands)
    _cron_parsers(commands)
    _limits_parser(commands)
    job_commands.dead_parsers(commands)
    _config_parsers(commands)
    _keygen_parser(commands)
    _web_parser(commands)
    return parser


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for this command line: without the operator commands when it can only be
    `jobd`, `jobd run` or `jobd check`, as at every start of a worker. Their twenty subparsers take
    longer to build than the rest of the command line's work (each asks gettext for translations,
    a few file lookups apiece): about 5 ms of a worker's start, more on a busy machine
    (bench/startup.py). Help, any other command and any word the check below cannot place get the
    whole parser, so the result and every message are the same as with it."""
    light = build_parser(operators=False)
    return light if _parsed_alike(light, argv) else build_parser()


def _parsed_alike(light: argparse.ArgumentParser, argv: Sequence[str]) -> bool:
    """True when each word of `argv` is an option, the value of an option that takes one, or the
    command run or check: parsers that differ only in their other commands then read it alike."""
    parsers = [light]
    for action in light._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += action.choices.values()
    takes_value = {
        option
        for parser in parsers
        for action in parser._actions
        if action.nargs != 0
        for option in action.option_strings
    }
    value_next = False
    for word in argv:
        if value_next:
            value_next = False
        elif word in ("-h", "--help", "--"):
            return False
        elif word.startswith("-"):
            value_next = word in takes_value
        elif word not in ("run", "check"):
            return False
    return True


def _status_parser(commands: Any) -> None:
    status = operator(
        commands,
        "status",
        _status,
        help="jobs per queue and state, the live workers, the limits and the cron entries",
        description="Per queue: how many jobs are queued, scheduled (deferred or waiting for a "
        "retry), running and dead (failed for good), and OLDEST, how long the job at the head of "
        "the queue (the next to run) has been due. Then the live workers: host, pid, queues, "
        "jobs running of their concurrency, jobs processed, uptime, last heartbeat, version. "
        "Then each limit's use (as `jobd limits` shows it) and the cron entries.",
    )
    queue_option(status)
    json_option(status, "the queues and workers")


def _limits(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import limits

    return limits.limits_list(settings, as_json=arguments.json)


def _limits_parser(commands: Any) -> None:
    limits = operator(
        commands,
        "limits",
        _limits,
        help="the [limits]: slots in use, starts and cost in the window, pauses, jobs held back",
        description="Show each limit's use across the fleet, read from Redis: running jobs "
        "against `concurrency`, starts and cost in the current window against `rate` and "
        "`cost`, a pause set by jobd.Throttled, and the jobs it holds back. Per-group limits "
        "also list their busiest groups. Limits no function names are left out.",
    )
    json_option(limits, "the limits")


def _cron_list(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import cron

    return cron.cron_list(settings, as_json=arguments.json)


def _cron_parsers(commands: Any) -> None:
    cron = commands.add_parser(
        "cron",
        help="the [[cron]] entries: last run, its outcome, next run",
        description="Look at the scheduled ([[cron]]) entries of the configuration.",
    )
    actions = cron.add_subparsers(dest="cron_command", metavar="ACTION", required=True)
    listing = operator(
        actions,
        "list",
        _cron_list,
        help="every entry with its last run, that run's outcome and the next run",
        description="Every [[cron]] entry: schedule, time zone, queue, the last tick any worker "
        "fired, the outcome of that tick's job (while its result is kept), and the next tick.",
    )
    json_option(listing, "the entries")


def _keygen_parser(commands: Any) -> None:
    operator(
        commands,
        "keygen",
        _keygen,
        needs_config=False,
        help="print a new key for encrypted payloads",
        description="Print a new random key for worker.encryption_keys, Client(encryption_keys=)\n"
        "and JOBD_ENCRYPTION_KEYS: 32 bytes from the operating system's random source, as\n"
        "URL-safe base64, on stdout; its key id (what jobd stores beside each value it\n"
        "encrypts, and names in errors) on stderr. Keep it secret, and in the environment,\n"
        "never in jobs.toml. docs/encryption.md: rolling it out, rotating it.",
        epilog="examples:\n"
        "  jobd keygen                                   the key, and its id on stderr\n"
        "  export JOBD_ENCRYPTION_KEY=$(jobd keygen)     for the workers' jobs.toml\n"
        "  export JOBD_ENCRYPTION_KEYS=$NEW,$OLD         producers: the first encrypts",
    )


def _config_parsers(commands: Any) -> None:
    configuration = commands.add_parser(
        "config",
        help="show the effective configuration, or write a starter file",
        description="Show the configuration jobd uses (`show`) or start a new one (`init`).",
    )
    actions = configuration.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    operator(
        actions,
        "show",
        _config_show,
        help="the effective settings as TOML, secrets hidden",
        description="Print the settings jobd uses, as TOML, with every default filled in. The "
        "Redis password and every value read from the environment (${NAME}) are shown as ***.",
    )
    init = operator(
        actions,
        "init",
        _config_init,
        needs_config=False,
        help="write a commented starter jobs.toml",
        description="Write a jobs.toml listing every key with its default and what it means. "
        "An existing file is never overwritten (exit 1).",
    )
    init.add_argument(
        "path", metavar="PATH", nargs="?", default="jobs.toml", help="where (default: ./jobs.toml)"
    )


def _web(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import web

    return web.serve(settings, listen=arguments.listen, read_only=arguments.read_only)


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(text, 78) for text in texts)


def _web_parser(commands: Any) -> None:
    web = operator(
        commands,
        "web",
        _web,
        help="serve the web dashboard (needs the web extra: pip install 'jobd[web]')",
        description=_paragraphs(
            "Serve the dashboard in a browser: every queue with its jobs per state, "
            "throughput and failures of the last hour, each job with its arguments, result or "
            "traceback and live events, the dead letters (retry, purge), scheduled jobs, cron "
            "entries, workers and limits, all read from the configuration's Redis (several "
            "dashboards show the same). Actions (retry, purge, abort) are POSTs protected against "
            "cross-site request forgery, and logged with who sent them.",
            "It listens on 127.0.0.1:9181. To listen elsewhere, set JOBD_WEB_PASSWORD (and "
            "JOBD_WEB_USER, default admin): every request then needs HTTP basic auth, and without "
            "the password jobd web refuses to start (exit 78). Put TLS in front of it (a reverse "
            "proxy) beyond a trusted network. To mount it in your own FastAPI or Starlette app "
            "instead: app.mount('/jobd', jobd.web.create_app(client)).",
        ),
        epilog="examples:\n"
        "  jobd web --config jobs.toml                      http://127.0.0.1:9181/\n"
        "  jobd web --read-only                             no retry, purge or abort\n"
        "  JOBD_WEB_PASSWORD=... jobd web --listen 0.0.0.0:9181   basic auth as admin",
    )
    web.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to serve on (default: 127.0.0.1:9181; any other than loopback needs "
        "JOBD_WEB_PASSWORD)",
    )
    web.add_argument(
        "--read-only",
        action="store_true",
        help="show everything, offer no actions, and refuse their requests (403)",
    )
