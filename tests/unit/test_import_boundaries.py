"""The producer client needs only redis: importing it loads none of the worker's dependencies."""

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
