"""The command-line, metrics and exceptions references, from the parser, the registry and
jobd/errors.py."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Iterator

from refgen_text import anchor, escape, log, sentence

# -- command line -------------------------------------------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, words: list[str], summary: str
) -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    yield words, parser, summary
    for action in parser._actions:  # argparse keeps its actions private
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from _commands(sub, [*words, name], helps.get(name, ""))


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    shown = ", ".join(f"`{option}`" for option in action.option_strings)
    if action.choices:
        return shown + " `{" + ",".join(map(str, action.choices)) + "}`"
    if action.nargs != 0:
        metavar = action.metavar or action.dest.upper()
        return shown + f" `{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"
    return shown


def cli_entries() -> Iterator[tuple[str, argparse.ArgumentParser, str, list[argparse.Action]]]:
    """(command, its parser, its one-line help, its options) of every `jobd` command."""
    from jobd.cli.parser import build_parser

    for words, parser, summary in _commands(build_parser(), ["jobd"], ""):
        actions = [
            action
            for action in parser._actions
            if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        ]
        yield " ".join(words), parser, summary, actions


def generate_cli() -> str:
    out: list[str] = []
    for command, parser, summary, actions in cli_entries():
        command_id = anchor(command)
        out.append(f"## `{command}` {{#{command_id}}}\n")
        if summary:
            out.append(f"{sentence(summary)}\n")
        usage = parser.format_usage().strip().removeprefix("usage: ")
        out.append(f"```text\n{usage}\n```\n")
        if parser.description:
            out.append(f"{escape(' '.join(parser.description.split()))}\n")
        if actions:
            out.append("| option | meaning |\n|---|---|")
            for action in actions:
                name = (action.option_strings or [action.dest])[-1].lstrip("-")
                cell = f'<a id="{command_id}--{name}"></a>{_option(action)}'
                meaning = escape(" ".join((action.help or "").split()))
                if action.help is None and action.option_strings == ["--version"]:
                    meaning = "print the version and exit"
                out.append(f"| {cell} | {meaning} |")
            out.append("")
        if parser.epilog:
            out.append(f"```text\n{parser.epilog.strip()}\n```\n")
    return "\n".join(out)


# -- metrics ------------------------------------------------------------------------------------


def metric_entries() -> Iterator[tuple[str, str, tuple[str, ...], str]]:
    """(name as exposed, type, labels, help) of every metric a worker registers; a histogram's
    help ends with its buckets."""
    from prometheus_client.metrics import MetricWrapperBase

    from jobd.config.durations import format_duration
    from jobd.ops.metrics import Metrics

    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase):
            kind, help_text = value._type, value._documentation
            name = value._name + ("_total" if kind == "counter" else "")
            if kind == "histogram":
                bounds = [bound for bound in value._upper_bounds if bound != float("inf")]
                shown = f"{format_duration(bounds[0])} … {format_duration(bounds[-1])}"
                help_text += f" Buckets: {len(bounds)}, {shown}."
            yield name, kind, tuple(value._labelnames), help_text


def generate_metrics() -> str:
    from jobd.ops import metrics

    values = {
        "outcome": metrics.OUTCOMES,
        "reason": metrics.DEAD_REASONS,
        "state": metrics.QUEUE_STATES,
    }
    out = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, kind, labels, documentation in metric_entries():
        cell = f'<a id="{name}"></a>`{name}`'
        out.append(f"| {cell} | {kind} | {', '.join(labels)} | {escape(documentation)} |")
    out.append("| `process_*`, `python_info` | | | the standard process and platform collectors |")
    out.append("\nLabel values that come from fixed lists:\n")
    for label, members in values.items():
        out.append(f"- `{label}`: " + ", ".join(f"`{member}`" for member in members))
    return "\n".join(out) + "\n"


# -- exceptions ---------------------------------------------------------------------------------


def exception_entries() -> Iterator[tuple[type[BaseException], str]]:
    """Every exception class of jobd.errors, in source order, with its docstring."""
    from jobd import errors

    for value in vars(errors).values():
        own = isinstance(value, type) and value.__module__ == errors.__name__
        if own and issubclass(value, BaseException):
            yield value, inspect.cleandoc(value.__doc__ or "")


def generate_exceptions() -> str:
    import jobd
    import jobd.client
    from jobd import errors

    out = ["```text", inspect.cleandoc(errors.__doc__ or "").split("\n\n")[1], "```\n"]
    for cls, doc in exception_entries():
        if not doc:
            log.warning("exception %s has no docstring", cls.__name__)
        bases = ", ".join(f"`{base.__name__}`" for base in cls.__bases__)
        exported = [
            module.__name__ for module in (jobd, jobd.client) if cls.__name__ in module.__all__
        ]
        where = ", ".join(f"`{name}.{cls.__name__}`" for name in ["jobd.errors", *exported])
        out.append(f"## `{cls.__name__}` {{#{cls.__name__}}}\n")
        out.append(f"Subclass of {bases}. Import as {where}.\n")
        out.append(f"{escape(' '.join(doc.split()))}\n")
    return "\n".join(out)
