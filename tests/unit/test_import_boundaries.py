"""The import boundaries of jobd's packages.

- The producer client needs only redis: importing it loads none of the worker's dependencies.
- A worker loads what only some configuration files need (cron, durations, misspellings) on demand.
- Imports point downward: shared vocabulary <- redis <- config <- client, ops <- worker <- cli,
  daemon (the table ALLOWED below), and no module imports itself back through others, not even
  under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import jobd

PACKAGE = Path(jobd.__file__).parent

WORKER_ONLY = (
    "uvloop",
    "croniter",
    "prometheus_client",
    "tomli_w",
    "jobd.worker",
    "jobd.ops",
    "jobd.cli",
    "jobd.daemon",
    "jobd.supervisor",
    "jobd.config.loader",
    "jobd.web",
    "starlette",
    "jinja2",
    "uvicorn",
)
"""Modules (and their submodules) that a producer never loads."""

WEB_ONLY = ("jobd.web", "starlette", "jinja2", "uvicorn")
"""The dashboard and its dependencies (the web extra): neither producers nor workers load them."""


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def among(modules: Iterable[str], names: tuple[str, ...]) -> list[str]:
    """The modules that are one of `names` or inside one of them."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_client_loads_no_worker_dependencies() -> None:
    modules = loaded_after("import jobd.client")
    assert "redis" in modules
    assert among(modules, WORKER_ONLY) == []


def test_sync_client_loads_no_worker_dependencies() -> None:
    modules = loaded_after("import jobd.sync_client")
    assert "jobd.client.sync_client" in modules
    assert among(modules, WORKER_ONLY) == []


def test_the_check_itself_can_fail() -> None:
    """Guard against a check that cannot fail: the daemon does load the worker and its metrics."""
    found = among(loaded_after("import jobd.daemon"), WORKER_ONLY)
    assert {"jobd.worker.lifecycle", "prometheus_client"} <= set(found)


def test_the_worker_loads_nothing_of_the_dashboard() -> None:
    modules = loaded_after("import jobd.cli, jobd.daemon, jobd.worker.lifecycle")
    assert "jobd.worker.lifecycle" in modules
    assert among(modules, WEB_ONLY) == []


def test_the_dashboard_loads_no_worker() -> None:
    """jobd.web reads Redis through the producer client; the worker's loops stay out."""
    modules = loaded_after("import jobd.web")
    assert {"jobd.web.app", "starlette", "jinja2"} <= modules
    assert among(modules, ("jobd.worker", "jobd.daemon", "jobd.cli", "uvloop")) == []
    assert among(modules, ("prometheus_client", "croniter", "uvicorn")) == []


def test_a_producer_needs_one_import_line() -> None:
    modules = loaded_after(
        "from jobd.client import Client, SyncClient, Job, JobFailed, JobAborted, JobNotFound, "
        "RedisUnavailable, InvalidJobOption, JobStatus"
    )
    assert among(modules, WORKER_ONLY) == []


def test_jobd_check_does_not_load_the_worker(tmp_path: Path) -> None:
    """`jobd check` imports the functions and validates the file; the worker's loops stay out."""
    config = tmp_path / "jobs.toml"
    config.write_text('[functions.send]\npath = "json:dumps"\n')
    modules = loaded_after(
        "import contextlib, io\nfrom jobd.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['check', '--config', {str(config)!r}]) == 0"
    )
    assert "jobd.worker.functions" in modules  # the check below can fail
    assert among(modules, ("jobd.worker.lifecycle", "jobd.daemon", "uvloop")) == []


ON_DEMAND = ("croniter", "zoneinfo", "difflib")
"""Loaded by a [[cron]] entry (and its time zone) and by a mistake: about 1.3 MiB an idle worker spares.
decimal is never loaded: durations are exact in integers."""


def worker_with(config: str) -> set[str]:
    """Modules of a worker after it checked `config` (a file with a mistake only reports it)."""
    return loaded_after(
        "import jobd.cli, jobd.daemon, jobd.worker.lifecycle, jobd.config.loader, jobd.errors\n"
        f"try:\n    jobd.config.loader.loads({config!r})\nexcept jobd.errors.ConfigError:\n    pass"
    )


def test_a_plain_worker_loads_nothing_on_demand() -> None:
    modules = worker_with('[functions.send]\npath = "json:dumps"\ntimeout = "1m30s"\n')
    assert "jobd.worker.lifecycle" in modules
    assert [name for name in (*ON_DEMAND, "decimal") if name in modules] == []


def test_what_a_file_asks_for_is_loaded() -> None:
    modules = worker_with(
        '[functions.send]\npath = "json:dumps"\n[worker]\nconcurency = 10\n'
        '[[cron]]\nname = "nightly"\nfunction = "send"\nschedule = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\n'
    )
    assert [name for name in ON_DEMAND if name in modules] == list(ON_DEMAND)


# -- what a starting worker loads (its startup time: bench/startup.py) --------------------------

LAZY = (
    "croniter",
    "jobd.worker.tracing",
    "cryptography.hazmat",
    "jobd.redis.embedded",
    "jobd.supervisor",
    "jobd.client",
    "jobd.cli.job_commands",
    "tomli_w",
    *WEB_ONLY,
)
"""Loaded only for what a configuration asks for ([[cron]], [tracing], encryption keys, the
embedded Redis, `--processes`), by other commands, or never by a worker. Each costs a worker's
every start; OpenTelemetry itself is left out because redis-py 8 imports its SDK wherever it is
installed."""


def worker_started(config: str) -> set[str]:
    """Modules of a fresh interpreter once it parsed `jobd run`, loaded `config`, imported the
    functions and built the worker, as the daemon does before its first claim."""
    return loaded_after(
        "import asyncio\nfrom jobd.cli.parser import parser_for\n"
        "argv = ['run', '--config', 'jobs.toml']\nparser_for(argv).parse_args(argv)\n"
        "from jobd import daemon\nfrom jobd.config import loader\n"
        "from jobd.worker.lifecycle import Worker\n"
        f"settings = loader.loads({config!r})\n"
        "functions, hooks = daemon.prepare(settings)\n"
        "async def build() -> None:\n    Worker(settings, functions)\n"
        "asyncio.run(build())"
    )


def test_a_starting_worker_loads_only_what_its_configuration_asks_for() -> None:
    modules = worker_started('[functions.send]\npath = "json:dumps"\n')
    assert {"jobd.worker.lifecycle", "prometheus_client", "redis"} <= modules
    assert among(modules, LAZY) == []


def test_a_starting_worker_loads_tracing_and_cron_when_configured() -> None:
    """The other side of the check above, so that it can fail."""
    modules = worker_started(
        '[functions.send]\npath = "json:dumps"\n[tracing]\nenabled = true\n'
        '[[cron]]\nname = "nightly"\nfunction = "send"\nschedule = "0 3 * * *"\n'
    )
    assert [name for name in LAZY if among(modules, (name,))] == ["croniter", "jobd.worker.tracing"]


def test_the_command_line_loads_no_worker_before_it_knows_the_command() -> None:
    """`jobd --help`, `jobd status` and the parsing of `jobd run` load the parser alone: no
    Redis client, no metrics, no event loop policy, no worker."""
    modules = loaded_after("from jobd.cli.entry import build_parser\nbuild_parser()")
    assert "jobd.cli.job_commands" in modules  # the whole parser: `jobd run` builds less (above)
    heavy = ("redis", "prometheus_client", "uvloop", "opentelemetry", "croniter", "jobd.worker")
    assert among(modules, (*heavy, "jobd.daemon", "jobd.ops", "jobd.redis")) == []


# -- the direction of imports -----------------------------------------------------------------

SHARED = (
    "jobd", "jobd.errors", "jobd.context", "jobd.model", "jobd.events", "jobd.serializer",
    "jobd.signing", "jobd.crypto",
)  # fmt: skip
"""The vocabulary every part speaks: the error tree, current_job(), the job model, job events,
JSON, signing, encryption (`jobd` itself is the package's __init__, which imports only context
and errors)."""

ALLOWED: Mapping[str, tuple[str, ...]] = {
    "shared": SHARED,
    "jobd.redis": (*SHARED, "jobd.redis", "jobd.config.settings"),
    "jobd.config": (*SHARED, "jobd.config", "jobd.redis"),
    "jobd.client": (*SHARED, "jobd.client", "jobd.redis", "jobd.config"),
    "jobd.ops": (*SHARED, "jobd.ops", "jobd.redis", "jobd.config"),
    "jobd.worker": (*SHARED, "jobd.worker", "jobd.ops", "jobd.redis", "jobd.config"),
    "jobd.cli": (
        *SHARED,
        "jobd.cli",
        "jobd.client",
        "jobd.worker",
        "jobd.ops",
        "jobd.redis",
        "jobd.config",
        "jobd.daemon",
        "jobd.web",
        "jobd.supervisor",
    ),
    "jobd.web": (
        *SHARED,
        "jobd.web",
        "jobd.client",
        "jobd.redis",
        "jobd.config",
        # cron_overview, for the cron page (imported there, when entries are configured)
        "jobd.worker.cron",
    ),
    "jobd.daemon": (*SHARED, "jobd.worker", "jobd.ops", "jobd.redis", "jobd.config"),
    # `jobd --processes N`: starts `jobd run` processes; never imports the worker itself
    "jobd.supervisor": (*SHARED, "jobd.supervisor", "jobd.ops", "jobd.config"),
    "jobd.sync_client": ("jobd.client",),
    "jobd.__main__": ("jobd.cli",),
}
"""What each part may import: a name allows its submodules too ("jobd" is the __init__ alone).
Nothing below imports the worker, the operations side or the command line; the dashboard
(jobd.web) reads through the producer client, and borrows only the worker's cron arithmetic."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").exists() or (
        root / relative / "__init__.py"
    ).exists()


def imports_of(path: Path) -> set[str]:
    """Every jobd module that `path` imports: at the top, inside functions and under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "jobd")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "jobd":
                continue
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if is_module(name) else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def area(module: str) -> str:
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    return ".".join(parts[:2])


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        allowed = ALLOWED[area(module)]
        for name in sorted(imported):
            if not any(name == a or (a != "jobd" and name.startswith(a + ".")) for a in allowed):
                found.append(f"{module} imports {name}")
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_place_in_the_table() -> None:
    graph = import_graph()
    assert "jobd.worker.lifecycle" in graph and "jobd.redis.keys" in graph
    assert sorted({area(module) for module in graph} - set(ALLOWED)) == []


def test_imports_point_downward() -> None:
    assert violations(import_graph()) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_the_direction_checks_can_fail() -> None:
    graph = {
        "jobd.redis.keys": {"jobd.worker.store"},
        "jobd.worker.store": {"jobd.worker.lifecycle"},
        "jobd.worker.lifecycle": {"jobd.worker.store"},
    }
    assert violations(graph) == ["jobd.redis.keys imports jobd.worker.store"]
    assert cycles(graph) == [["jobd.worker.lifecycle", "jobd.worker.store"]]
