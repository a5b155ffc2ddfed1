"""`jobd run` and `jobd check` are parsed without building the operator commands' parsers (part of
a worker's startup); every other command line, help and mistakes get the whole parser, and each
command line reads the same either way."""

from __future__ import annotations

import argparse

import pytest

from jobd.cli.parser import build_parser, parser_for


def commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


WORKER_LINES = [
    [],
    ["--config", "jobs.toml"],
    ["-c", "jobs.toml", "--burst"],
    ["run", "--config", "jobs.toml", "--log-level", "debug"],
    ["--log-format", "json", "run", "-c", "run"],
    ["--config=jobs.toml", "run", "--burst"],
    ["check", "--config", "status"],
]


@pytest.mark.parametrize("argv", WORKER_LINES)
def test_a_worker_start_gets_the_small_parser_and_the_same_arguments(argv: list[str]) -> None:
    parser = parser_for(argv)
    assert commands(parser) == ["run", "check"]
    assert vars(parser.parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["--config", "jobs.toml", "dead", "list"],
        ["--help"],
        ["run", "-h"],
        ["--burst", "stauts"],  # a mistake: the message lists every command
        ["--conf", "jobs.toml"],  # an abbreviated option whose value the check cannot place
        ["--", "run"],
    ],
)
def test_anything_else_gets_the_whole_parser(argv: list[str]) -> None:
    assert "status" in commands(parser_for(argv))
    assert commands(parser_for(argv)) == commands(build_parser())
