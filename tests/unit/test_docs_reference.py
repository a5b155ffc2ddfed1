"""The reference pages of the documentation site are generated from the code by docs/hooks/
(MkDocs runs them at build time): here they run without MkDocs, and must document every
jobs.toml key, command option, metric, exception and Lua script, without a warning (a warning
fails `mkdocs build --strict`)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

from jobd.cli.parser import build_parser

REPO = Path(__file__).resolve().parents[2]


def reference_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", REPO / "docs" / "hooks" / "reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_documents_everything_without_a_warning(caplog: Any) -> None:
    hook = reference_hook()
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.reference"):
        pages = {name: generate() for name, generate in hook.GENERATORS.items()}
    assert not caplog.records, [record.getMessage() for record in caplog.records]

    keys = [entry[1] for entry in hook.config_entries()]
    assert {"redis.url", "worker.concurrency", "defaults.retry.backoff", "cron.schedule"} <= {*keys}
    template = tomllib.loads((REPO / "jobd" / "config" / "templates" / "jobs.toml").read_text())
    for section in ("redis", "worker", "http", "defaults", "events", "tracing"):
        for key in template[section]:
            assert f"{section}.{key}" in keys
            assert f"{{#{section}.{key}}}" in pages["config"]

    for command, _parser, _, actions in hook.cli_entries():
        for action in actions:
            name = (action.option_strings or [action.dest])[-1].lstrip("-")
            assert f'id="{hook.anchor(command)}--{name}"' in pages["cli"]
    commands = {entry[0] for entry in hook.cli_entries()}
    assert {"jobd run", "jobd enqueue", "jobd dead retry", "jobd web"} <= commands
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {f"jobd {name}" for name in top.choices} <= commands

    for name, *_ in hook.metric_entries():
        assert f'id="{name}"' in pages["metrics"]
    assert 'id="jobd_jobs_finished_total"' in pages["metrics"]
    for cls, _ in hook.exception_entries():
        assert f"{{#{cls.__name__}}}" in pages["exceptions"]
    lua = sorted(path.name for path in (REPO / "jobd" / "redis" / "lua").glob("*.lua"))
    assert [name for name, _ in hook.lua_headers()] == lua
