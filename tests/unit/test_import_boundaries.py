"""The producer client needs only redis: importing it loads none of the worker's dependencies. A
worker loads what only some configuration files need (cron, durations, misspellings) on demand."""

from __future__ import annotations

import subprocess
import sys

WORKER_ONLY = ("uvloop", "croniter", "prometheus_client", "tomli_w", "jobd.worker", "jobd.config")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_client_loads_no_worker_dependencies() -> None:
    modules = loaded_after("import jobd.client")
    assert "redis" in modules
    assert not [name for name in WORKER_ONLY if name in modules]


def test_sync_client_loads_no_worker_dependencies() -> None:
    modules = loaded_after("import jobd.sync_client")
    assert not [name for name in WORKER_ONLY if name in modules]


def test_the_check_itself_can_fail() -> None:
    """Guard against a check that cannot fail: the daemon does load uvloop."""
    assert "uvloop" in loaded_after("import jobd.daemon, uvloop")


ON_DEMAND = ("croniter", "zoneinfo", "difflib")
"""Loaded by a [[cron]] entry (and its time zone) and by a mistake: about 1.3 MiB an idle worker spares.
decimal is never loaded: durations are exact in integers."""


def worker_with(config: str) -> set[str]:
    """Modules of a worker after it checked `config` (a file with a mistake only reports it)."""
    return loaded_after(
        "import jobd.cli, jobd.daemon, jobd.worker, jobd.config, jobd.errors\n"
        f"try:\n    jobd.config.loads({config!r})\nexcept jobd.errors.ConfigError:\n    pass"
    )


def test_a_plain_worker_loads_nothing_on_demand() -> None:
    modules = worker_with('[functions.send]\npath = "json:dumps"\ntimeout = "1m30s"\n')
    assert "jobd.worker" in modules
    assert [name for name in (*ON_DEMAND, "decimal") if name in modules] == []


def test_what_a_file_asks_for_is_loaded() -> None:
    modules = worker_with(
        '[functions.send]\npath = "json:dumps"\n[worker]\nconcurency = 10\n'
        '[[cron]]\nname = "nightly"\nfunction = "send"\nschedule = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\n'
    )
    assert [name for name in ON_DEMAND if name in modules] == list(ON_DEMAND)
