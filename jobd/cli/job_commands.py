"""The `jobd` commands that act on jobs one by one or on the dead letters: `enqueue`, `job show |
follow | abort` and `dead list | retry | purge` (their parsers, and the handlers that call
jobd.cli.jobs and jobd.cli.dead)."""

from __future__ import annotations

import argparse
from typing import Any

from jobd.cli.options import json_option, operator, positive, queue_option
from jobd.config.settings import Settings


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


def enqueue_parser(commands: Any) -> None:
    enqueue = operator(
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
        type=positive,
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
        type=positive,
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


def job_parsers(commands: Any) -> None:
    job = commands.add_parser(
        "job",
        help="show, follow or abort one job",
        description="Look at one job (`show`), read its events as they come (`follow`) or stop "
        "it (`abort`).",
    )
    actions = job.add_subparsers(dest="job_command", metavar="ACTION", required=True)
    show = operator(
        actions,
        "show",
        _job_show,
        help="everything stored about a job",
        description="Print a job's status, function, arguments, queue, priority, tries, times, "
        "result or error (with traceback). The job is looked for in every queue jobd reports "
        "unless --queue names it. Exit 1 if it is not found.",
    )
    show.add_argument("job_id", metavar="ID", help="the job's id")
    queue_option(show)
    json_option(show, "the job")
    follow = operator(
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
    queue_option(follow)
    follow.add_argument(
        "--json", action="store_true", help="print each event as one line of JSON instead of text"
    )
    abort = operator(
        actions,
        "abort",
        _job_abort,
        help="abort a job: a waiting one will not run, a running one is cancelled",
        description="Abort a job. A queued or scheduled job is removed at once; a running job is "
        "cancelled by its worker (this waits a few seconds for that). A job that already ended "
        "is left alone. Exit 1 if the job is not found or still runs after the wait.",
    )
    abort.add_argument("job_id", metavar="ID", help="the job's id")
    queue_option(abort)


def dead_parsers(commands: Any) -> None:
    dead = commands.add_parser(
        "dead",
        help="list, retry or purge dead jobs (failed for good)",
        description="Dead jobs failed on every try (or lost their worker max_lost times, or "
        "could not be run at all); they are kept with their error until retried or purged.",
    )
    actions = dead.add_subparsers(dest="dead_command", metavar="ACTION", required=True)
    listing = operator(
        actions,
        "list",
        _dead_list,
        help="dead jobs, newest first",
        description="List dead jobs, newest first: when each failed, queue, id, function, tries "
        "and error. `jobd job show ID` prints one with its traceback.",
    )
    queue_option(listing)
    listing.add_argument(
        "--limit", type=positive, default=50, metavar="N", help="show at most N (default: 50)"
    )
    json_option(listing, "the dead jobs")
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
        change = operator(
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
        queue_option(change)
