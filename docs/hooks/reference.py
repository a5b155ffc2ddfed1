"""MkDocs hook: the reference pages, generated from the code at build time so they cannot drift.

A page asks for a generated part with a marker line, `<!-- generated: NAME -->`, which
`on_page_markdown` replaces by the Markdown of `GENERATORS[NAME]`:

    config      every jobs.toml key: jobd/config/settings.py (the dataclasses, their defaults and
                the comment above each field)
    cli         every command and option: the argparse parser of jobd/cli
    metrics     every metric: the registry of jobd/ops/metrics.py
    exceptions  every exception: jobd/errors.py
    keys        the Redis key schema: the docstring of jobd/redis/keys.py
    lua         every Lua script with its header: jobd/redis/lua/*.lua
    bench       the latest benchmark tables: bench/results/latest.md
    faults      the fault scenarios of the failure study: docs/reliability.md §5.2
    modules     every package of jobd/ with the module list of its __init__.py

The generators live beside this file: refgen_settings (config), refgen_code (cli, metrics,
exceptions), refgen_internals (the rest), refgen_text (what they share). A key, exception, Lua
script or package without a description, and an unknown marker, is a warning, which
`mkdocs build --strict` turns into a failed build. tests/unit/test_docs_examples.py runs the
generators too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the generators beside this file

from refgen_code import (
    cli_entries,
    exception_entries,
    generate_cli,
    generate_exceptions,
    generate_metrics,
    metric_entries,
)
from refgen_internals import (
    fault_entries,
    generate_bench,
    generate_faults,
    generate_keys,
    generate_lua,
    generate_modules,
    key_entries,
    lua_headers,
    module_entries,
)
from refgen_settings import config_entries, generate_config
from refgen_text import anchor, log

__all__ = [
    "GENERATORS",
    "anchor",
    "cli_entries",
    "config_entries",
    "exception_entries",
    "fault_entries",
    "key_entries",
    "lua_headers",
    "metric_entries",
    "module_entries",
    "on_page_markdown",
]

MARKER = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->$", re.MULTILINE)

GENERATORS: dict[str, Callable[[], str]] = {
    "config": generate_config,
    "cli": generate_cli,
    "metrics": generate_metrics,
    "exceptions": generate_exceptions,
    "keys": generate_keys,
    "lua": generate_lua,
    "bench": generate_bench,
    "faults": generate_faults,
    "modules": generate_modules,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        generator = GENERATORS.get(match["name"])
        if generator is None:
            log.warning("%s: unknown generated part %r", page.file.src_uri, match["name"])
            return ""
        return generator()

    return MARKER.sub(replace, markdown)
