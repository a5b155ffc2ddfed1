"""The argument parser of the `jobd` command, and what each operator command calls.

Each operator command's parser sets `handler` (called with the arguments and the loaded settings),
`command_parser` (for its error messages) and `needs_config`. The handlers import their module only
when they run, so `jobd --help` and `jobd run` load nothing they do not use.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, NoReturn

from jobd import __version__
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

QUEUE_HELP = "look only at this queue (repeatable; default: worker.queues, the queues of "
QUEUE_HELP += "[functions] and those live workers consume)"


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line: `jobd status: error: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    _config_option(parser, default)
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


def _config_option(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help="the jobs.toml to use (default: $JOBD_CONFIG)",
    )


def _run_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    parser.add_argument(
        "--burst",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="process jobs until no job is queued, scheduled or running, then exit 0",
    )


def _queue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--queue", action="append", metavar="NAME", dest="queues", help=QUEUE_HELP
    )


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json", action="store_true", help=f"print {what} as one JSON document instead of text"
    )


def _operator(
    commands: Any, name: str, handler: Any, *, needs_config: bool = True, **options: Any
) -> argparse.ArgumentParser:
    """A command parser whose `handler(arguments, settings)` does the work."""
    options.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    parser: argparse.ArgumentParser = commands.add_parser(name, **options)
    if needs_config:
        _config_option(parser)
    parser.set_defaults(handler=handler, command_parser=parser, needs_config=needs_config)
    return parser


# -- handlers: arguments -> jobd.cli.* ---------------------------------------------------------


def _status(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import status

    return status.status(settings, restrict=arguments.queues, as_json=arguments.json)


def _enqueue(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import jobs

    wait = None
    if arguments.wait is not None:
        wait = jobs.seconds(arguments.wait, "--wait")
    return jobs.enqueue(
        settings, arguments.function, arguments.args, kwargs_text=arguments.kwargs,
        queue=arguments.queue, delay=arguments.delay, job_id=arguments.job_id,
        priority=arguments.priority, max_tries=arguments.max_tries, wait=wait,
        group=arguments.group, cost=arguments.cost, after=arguments.after,
        after_failure=arguments.after_failure,
    )  # fmt: skip


def _job_show(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import jobs

    return jobs.show(settings, arguments.job_id, restrict=arguments.queues, as_json=arguments.json)


def _job_follow(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import jobs

    return jobs.follow(
        settings, arguments.job_id, restrict=arguments.queues, after=arguments.after,
        as_json=arguments.json,
    )  # fmt: skip


def _job_abort(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import jobs

    return jobs.abort(settings, arguments.job_id, restrict=arguments.queues)


def _dead_list(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import dead

    return dead.list_dead(
        settings, restrict=arguments.queues, limit=arguments.limit, as_json=arguments.json
    )


def _dead_change(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import dead
    from jobd.cli.shared import UsageError

    if arguments.all and arguments.job_ids:
        raise UsageError("give job ids or --all, not both")
    if not arguments.all and not arguments.job_ids:
        raise UsageError("give the ids of the dead jobs, or --all")
    return dead.change_dead(
        settings, arguments.action, arguments.job_ids, every=arguments.all,
        restrict=arguments.queues,
    )  # fmt: skip


def _config_show(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import config as config_commands

    return config_commands.show(settings)


def _config_init(arguments: argparse.Namespace, settings: Settings | None) -> int:
    from jobd.cli import config as config_commands

    return config_commands.init(arguments.path)


def _keygen(arguments: argparse.Namespace, settings: Settings | None) -> int:
    from jobd.cli import keygen

    return keygen.keygen()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    _status_parser(commands)
    _enqueue_parser(commands)
    _job_parsers(commands)
    _cron_parsers(commands)
    _limits_parser(commands)
    _dead_parsers(commands)
    _config_parsers(commands)
    _keygen_parser(commands)
    _web_parser(commands)
    return parser


def _status_parser(commands: Any) -> None:
    status = _operator(
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
    _queue_option(status)
    _json_option(status, "the queues and workers")


def _enqueue_parser(commands: Any) -> None:
    enqueue = _operator(
        commands,
        "enqueue",
        _enqueue,
        help="enqueue a job and print its id",
        description="Store a job for FUNCTION (a name producers enqueue, e.g. a [functions] "
        "key) and print its id. The queue is the function's configured queue, else the first of "
        "worker.queues.",
        epilog="examples:\n"
        '  jobd enqueue send_email \'["a@example.com"]\' --kwargs \'{"subject": "Hi"}\'\n'
        "  jobd enqueue cleanup --delay 10m --job-id cleanup:2025-01-31\n"
        "  jobd enqueue resize '[42]' --wait 30s   # prints the id, then the result as JSON",
    )
    enqueue.add_argument("function", metavar="FUNCTION", help="the function name to run")
    enqueue.add_argument(
        "args",
        metavar="ARGS",
        nargs="?",
        help="positional arguments as a JSON array, e.g. '[1, \"a\"]' (one argument: '[42]')",
    )
    enqueue.add_argument(
        "--kwargs", metavar="JSON", help="keyword arguments as a JSON object, e.g. '{\"k\": 1}'"
    )
    enqueue.add_argument("-q", "--queue", metavar="NAME", help="the queue to put the job in")
    enqueue.add_argument(
        "--delay", metavar="DURATION", help='run it no sooner than this from now, e.g. "30s", "5m"'
    )
    enqueue.add_argument(
        "--job-id",
        metavar="ID",
        help="the job's id (default: a random one); while a job with this id exists, nothing "
        "new is enqueued and its id is printed",
    )
    enqueue.add_argument(
        "--priority", type=int, default=0, help="-1000..1000, higher runs first (default: 0)"
    )
    enqueue.add_argument(
        "--group",
        metavar="NAME",
        help="the job's group: groups are served in turn, and per-group limits give each its "
        "own budget (any short printable text, e.g. a tenant id)",
    )
    enqueue.add_argument(
        "--cost",
        type=_positive,
        metavar="N",
        help="what the job charges against its function's cost limits (default: 1)",
    )
    enqueue.add_argument(
        "--after",
        action="append",
        metavar="ID",
        help="wait until job ID of the same queue has ended (repeatable): the job is 'waiting' "
        "until every parent ended",
    )
    enqueue.add_argument(
        "--after-failure",
        choices=("fail", "run"),
        default="fail",
        help="when a parent failed or was aborted: fail this job too (dead-lettered, the "
        "default) or run it anyway",
    )
    enqueue.add_argument(
        "--max-tries",
        type=_positive,
        metavar="N",
        help="tries before the job fails for good (default: the function's max_tries)",
    )
    enqueue.add_argument(
        "--wait",
        metavar="SECONDS",
        nargs="?",
        const="0",
        help='wait for the job to end and print its result as JSON; at most SECONDS ("30s", '
        '"5m"; none or 0: no limit). Exit 1 if it failed, was aborted or did not end in time',
    )


def _job_parsers(commands: Any) -> None:
    job = commands.add_parser(
        "job",
        help="show, follow or abort one job",
        description="Look at one job (`show`), read its events as they come (`follow`) or stop "
        "it (`abort`).",
    )
    actions = job.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    show = _operator(
        actions,
        "show",
        _job_show,
        help="everything stored about a job",
        description="Print a job's status, function, arguments, queue, priority, tries, times, "
        "result or error (with traceback). The job is looked for in every queue jobd reports "
        "unless --queue names it. Exit 1 if it is not found.",
    )
    show.add_argument("job_id", metavar="ID", help="the job's id")
    _queue_option(show)
    _json_option(show, "the job")
    follow = _operator(
        actions,
        "follow",
        _job_follow,
        help="print a job's events as they come, until it ends",
        description="Print the events of a job as it emits them (jobd.current_job().emit and "
        ".progress) with the worker's lifecycle events (started, retrying, and the end: "
        "succeeded, failed or aborted), from the start of its stream or after --after. Ends "
        "with the job: exit 0 if it succeeded, 1 if it failed or was aborted (or is not "
        "found). An ended job's events are replayed while its result is kept.",
    )
    follow.add_argument("job_id", metavar="ID", help="the job's id")
    follow.add_argument(
        "--after", metavar="EVENT_ID", help="start after this event id (resume where you left)"
    )
    _queue_option(follow)
    follow.add_argument(
        "--json", action="store_true", help="print each event as one line of JSON instead of text"
    )
    abort = _operator(
        actions,
        "abort",
        _job_abort,
        help="abort a job: a waiting one will not run, a running one is cancelled",
        description="Abort a job. A queued or scheduled job is removed at once; a running job is "
        "cancelled by its worker (this waits a few seconds for that). A job that already ended "
        "is left alone. Exit 1 if the job is not found or still runs after the wait.",
    )
    abort.add_argument("job_id", metavar="ID", help="the job's id")
    _queue_option(abort)


def _limits(arguments: argparse.Namespace, settings: Settings) -> int:
    from jobd.cli import limits

    return limits.limits_list(settings, as_json=arguments.json)


def _limits_parser(commands: Any) -> None:
    limits = _operator(
        commands,
        "limits",
        _limits,
        help="the [limits]: slots in use, starts and cost in the window, pauses, jobs held back",
        description="Show each limit's use across the fleet, read from Redis: running jobs "
        "against `concurrency`, starts and cost in the current window against `rate` and "
        "`cost`, a pause set by jobd.Throttled, and the jobs it holds back. Per-group limits "
        "also list their busiest groups. Limits no function names are left out.",
    )
    _json_option(limits, "the limits")


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
    listing = _operator(
        actions,
        "list",
        _cron_list,
        help="every entry with its last run, that run's outcome and the next run",
        description="Every [[cron]] entry: schedule, time zone, queue, the last tick any worker "
        "fired, the outcome of that tick's job (while its result is kept), and the next tick.",
    )
    _json_option(listing, "the entries")


def _dead_parsers(commands: Any) -> None:
    dead = commands.add_parser(
        "dead",
        help="list, retry or purge dead jobs (failed for good)",
        description="Dead jobs failed on every try (or lost their worker max_lost times, or "
        "could not be run at all); they are kept with their error until retried or purged.",
    )
    actions = dead.add_subparsers(dest="dead_command", metavar="ACTION", required=True)
    listing = _operator(
        actions,
        "list",
        _dead_list,
        help="dead jobs, newest first",
        description="List dead jobs, newest first: when each failed, queue, id, function, tries "
        "and error. `jobd job show ID` prints one with its traceback.",
    )
    _queue_option(listing)
    listing.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="show at most N (default: 50)"
    )
    _json_option(listing, "the dead jobs")
    for action, summary, description in (
        (
            "retry",
            "run dead jobs again",
            "Put dead jobs back in their queue, at their old place (same priority and enqueue "
            "order), with tries and lost reset to 0. Their last error stays visible in `jobd job "
            "show` until they end again.",
        ),
        (
            "purge",
            "delete dead jobs for good",
            "Delete dead jobs and everything stored about them.",
        ),
    ):
        change = _operator(
            actions,
            action,
            _dead_change,
            help=summary,
            description=description + " Exit 1 if an id is not a dead job.",
        )
        change.set_defaults(action=action)
        change.add_argument("job_ids", metavar="ID", nargs="*", help="ids of dead jobs")
        change.add_argument(
            "--all",
            action="store_true",
            help="every job that is dead when the command starts (in the queues looked at)",
        )
        _queue_option(change)


def _keygen_parser(commands: Any) -> None:
    _operator(
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
    _operator(
        actions,
        "show",
        _config_show,
        help="the effective settings as TOML, secrets hidden",
        description="Print the settings jobd uses, as TOML, with every default filled in. The "
        "Redis password and every value read from the environment (${NAME}) are shown as ***.",
    )
    init = _operator(
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
    web = _operator(
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
