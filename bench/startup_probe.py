"""`python -m bench.startup_probe MARKS_FILE [jobd arguments]`: `jobd` with the moments of its startup
phases appended to MARKS_FILE, one `phase<TAB>begin|end<TAB>time.time()` line each.

The phases are the first call of a few functions on the way to the first claim (the table below),
wrapped when their module is first imported (an import hook, so that nothing is imported earlier
than jobd itself imports it), and the imports of those modules themselves. Each phase is recorded
once: its first begin and its first end. The probe's own cost is a few file writes.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

_STARTED = time.time()

PHASES: dict[str, list[tuple[str, str]]] = {
    "jobd.cli.entry": [("main", "cli main")],
    "jobd.config.loader": [("load", "config load")],
    "jobd.daemon": [
        ("prepare", "import job functions and hooks"),
        ("settle_heap", "gc collect and freeze"),
        ("serve", "event loop running: serve"),
    ],
    "jobd.ops.probes": [("HttpServer.start", "http probe server start")],
    "jobd.worker.lifecycle": [("Worker.__init__", "Worker() built"), ("Worker.run", "Worker.run")],
    "jobd.worker.leases": [
        ("LeaseKeeper.check_channels", "subscribe check (connect)"),
        ("LeaseKeeper.heartbeat_once", "first heartbeat (reap, registry, renew)"),
    ],
    "jobd.worker.store": [
        ("Store.claim", "first claim"),
        ("Store.wait_and_claim", "first wait+claim"),
    ],
    "jobd.ops.systemd": [("Notifier.ready", "ready (READY=1)")],
    "jobd.worker.running": [("RunningJobs.start", "first job handed to its task")],
}
"""module -> [(function or Class.method, phase name)]."""


class Marks:
    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self.seen: set[tuple[str, str]] = set()

    def write(self, phase: str, event: str, moment: float | None = None) -> None:
        if (phase, event) in self.seen:
            return
        self.seen.add((phase, event))
        self.file.write(f"{phase}\t{event}\t{time.time() if moment is None else moment!r}\n")


def _wrapped(marks: Marks, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            marks.write(phase, "begin")
            try:
                return await function(*args, **kwargs)
            finally:
                marks.write(phase, "end")

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        marks.write(phase, "begin")
        try:
            return function(*args, **kwargs)
        finally:
            marks.write(phase, "end")

    return timed


def _patch(marks: Marks, module: ModuleType) -> None:
    for target, phase in PHASES[module.__name__]:
        owner: Any = module
        *path, name = target.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        function = getattr(owner, name, None)
        if function is not None:
            setattr(owner, name, _wrapped(marks, phase, function))


class Hook(importlib.abc.MetaPathFinder):
    """Times the import of the modules in PHASES and wraps their functions once loaded."""

    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self.busy = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PHASES or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        loader: Any = spec.loader
        execute = loader.exec_module
        marks = self.marks

        def exec_module(module: ModuleType) -> None:
            marks.write(f"import {fullname}", "begin")
            execute(module)
            marks.write(f"import {fullname}", "end")
            _patch(marks, module)

        loader.exec_module = exec_module
        return spec


def main() -> None:
    marks = Marks(sys.argv[1])
    marks.write("probe", "begin", _STARTED)
    sys.meta_path.insert(0, Hook(marks))
    sys.argv = ["jobd", *sys.argv[2:]]
    from jobd.cli.entry import main as jobd_main

    raise SystemExit(jobd_main())


if __name__ == "__main__":
    main()
