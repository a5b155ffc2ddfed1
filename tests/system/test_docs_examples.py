"""The code blocks of the README and docs/ marked `<!-- test: run -->`, run as written against a
real worker: the daemon on config/jobs.toml (the functions of examples/jobs.py, on the suite's
Redis), and `jobs`, a Client of that configuration, as the pages say. A block runs with top-level
`await`; it fails the test by raising (its `assert` lines state what the page promises).
tests/unit/test_docs_examples.py checks every other block."""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
from pathlib import Path

import pytest

from jobd.client import Client
from tests.support.daemon import REPO_ROOT, Daemon
from tests.support.examples import on_suite_redis
from tests.system.conftest import MakeDaemon
from tests.unit.test_docs_examples import BLOCKS, Block

RUNNABLE = [block for block in BLOCKS if block.runnable]


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """config/jobs.toml, the configuration the pages' examples use, on the suite's Redis."""
    source = REPO_ROOT / "config" / "jobs.toml"
    return on_suite_redis(source, tmp_path, redis_url, key_prefix, http={"listen": "127.0.0.1:0"})


@pytest.fixture
def worker(make_daemon: MakeDaemon, config: Path) -> Daemon:
    return make_daemon(config, cwd=REPO_ROOT).start().wait_running()


def test_some_blocks_are_marked_to_run() -> None:
    assert len(RUNNABLE) >= 2, [block.where for block in RUNNABLE]


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.where for block in RUNNABLE])
async def test_runnable_block(block: Block, worker: Daemon, config: Path) -> None:
    tree = ast.parse(block.code, block.where)
    assert any(isinstance(node, ast.Assert) for node in ast.walk(tree)), (
        f"{block.where}: a block that runs states what it shows with `assert`"
    )
    code = compile(tree, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    output = io.StringIO()
    async with Client.from_config(config) as jobs:
        namespace = {"jobs": jobs}
        with contextlib.redirect_stdout(output):
            result = eval(code, namespace)  # the documentation's own code
            if inspect.iscoroutine(result):
                await result
    assert worker.running, worker.log_text()
