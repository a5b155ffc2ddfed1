"""Options and helpers that every command parser of `jobd` shares (jobd.cli.parser and
jobd.cli.job_commands build their commands with them)."""

from __future__ import annotations

import argparse
from typing import Any

QUEUE_HELP = "look only at this queue (repeatable; default: worker.queues, the queues of "
QUEUE_HELP += "[functions] and those live workers consume)"


def config_option(parser: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help="the jobs.toml to use (default: $JOBD_CONFIG)",
    )


def queue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--queue", action="append", metavar="NAME", dest="queues", help=QUEUE_HELP
    )


def json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json", action="store_true", help=f"print {what} as one JSON document instead of text"
    )


def operator(
    commands: Any, name: str, handler: Any, *, needs_config: bool = True, **options: Any
) -> argparse.ArgumentParser:
    """A command parser whose `handler(arguments, settings)` does the work."""
    options.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    parser: argparse.ArgumentParser = commands.add_parser(name, **options)
    if needs_config:
        config_option(parser)
    parser.set_defaults(handler=handler, command_parser=parser, needs_config=needs_config)
    return parser


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
