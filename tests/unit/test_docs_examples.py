"""Every code block of the README and of the documentation site (docs/) is checked, so that an
example that breaks fails CI. How each kind of block is covered:

- included from a file (`--8<-- "path"`, MkDocs' snippets): the file must exist, and its content
  gets the check of the block's language below; README blocks marked `<!-- file: path -->` must
  be that file, byte for byte (the files of examples/ are run by tests/system/test_example_*.py);
- ```python: compiles (top-level `await` allowed); every module and name it imports from jobd or
  examples exists, every other library it imports is one this project installs, and what it
  calls of jobd's API exists (`jobs.X` on the clients, `jobd.X`, `current_job().X`); blocks
  marked `<!-- test: run -->` are also run against a real Redis and worker by
  tests/system/test_docs_examples.py;
- ```toml: loads through jobd's configuration loader (a [[cron]] fragment gets the functions it
  names; `${NAME}` gets a value of the right shape);
- ```sh (and the `$ ` lines of ```console): each `jobd` command line parses with jobd's own
  argument parser, `python -m MODULE` names a module that exists, `python FILE` a file that exists;
- ```yaml, ```json, ```ini parse; ```dockerfile lines are Dockerfile instructions;
- ```mermaid: a state diagram's states are JobStatus values and its scripts exist;
- ```text is output and is not checked. A block without a language fails.

The reference pages are generated from the code by docs/hooks/ (tests/unit/test_docs_reference.py).
"""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.util
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tomli_w
import yaml

from jobd import crypto
from jobd.cli.parser import build_parser
from jobd.config.loader import loads
from jobd.errors import ConfigError
from jobd.model import JobStatus

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "hooks" not in path.parts)
SNIPPET = re.compile(r'^(?P<indent>\s*)--8<-- "(?P<path>[^"]+)"\s*$')
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<lang>[\w+-]*)(?P<info>.*)$")
MARKER = re.compile(r"^\s*<!-- (?P<kind>test|file): (?P<value>\S+) -->\s*$")
OWN_PACKAGES = ("jobd", "examples")
DOCKERFILE_INSTRUCTIONS = {
    "FROM", "RUN", "COPY", "ADD", "USER", "WORKDIR", "ENV", "ARG", "ENTRYPOINT", "CMD", "EXPOSE",
    "HEALTHCHECK", "LABEL", "VOLUME", "STOPSIGNAL", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    where: str
    lang: str
    code: str
    marker: tuple[str, str] | None
    included: str | None
    """The file a block consisting of one snippet line includes."""

    @property
    def runnable(self) -> bool:
        return self.marker == ("test", "run")


def resolve_snippet(spec: str) -> str:
    """The text `--8<-- "spec"` includes: a whole file, `path:name` a section marked
    `--8<-- [start:name]` … `[end:name]`, or `path:start:end` lines."""
    path, _, rest = spec.partition(":")
    file = REPO / path
    assert file.is_file(), f"snippet {spec!r}: no file {path}"
    text = file.read_text()
    if not rest:
        return text
    lines = text.splitlines()
    if re.fullmatch(r"\d*:\d*", rest):
        start, end = (int(part) if part else None for part in rest.split(":"))
        return "\n".join(lines[(start or 1) - 1 : end]) + "\n"
    begin = next(i for i, line in enumerate(lines) if f"--8<-- [start:{rest}]" in line)
    end = next(i for i, line in enumerate(lines) if f"--8<-- [end:{rest}]" in line)
    return "\n".join(lines[begin + 1 : end]) + "\n"


def expand(text: str) -> str:
    """`text` with its page-level snippet lines (outside code blocks) replaced by what they
    include, as MkDocs builds the page."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        match = SNIPPET.match(line)
        if match and not inside:
            out.extend(expand(resolve_snippet(match["path"])).splitlines())
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def blocks(path: Path) -> list[Block]:
    lines = expand(path.read_text()).splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = next(
            i for i in range(index + 1, len(lines)) if lines[i].strip() == fence
        )  # an unclosed fence raises StopIteration: a broken page
        body = [line[len(indent) :] for line in lines[index + 1 : end]]
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        snippet = SNIPPET.match(body[0]) if len(body) == 1 else None
        found.append(
            Block(
                where=f"{path.relative_to(REPO)}:{index + 1}",
                lang=opening["lang"],
                code="\n".join(body) + "\n",
                marker=(marker["kind"], marker["value"]) if marker else None,
                included=snippet["path"] if snippet else None,
            )
        )
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in [REPO / "README.md", *PAGES] for block in blocks(path)]


BLOCKS = all_blocks()


# -- the checks by language ---------------------------------------------------------------------


def check_python(code: str, where: str) -> None:
    tree = ast.parse(code, where)
    compile(tree, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    check_api_names(tree, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _check_module(alias.name, where)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            _check_module(node.module, where)
            if node.module.split(".")[0] in OWN_PACKAGES:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert _has(module, alias.name), f"{where}: {node.module} has no {alias.name}"


def check_api_names(tree: ast.AST, where: str) -> None:
    """The attributes a block uses of jobd's API exist: `jobs.X` on a Client or SyncClient,
    `jobd.X` in the package, `jobd.current_job().X` on JobContext."""
    import jobd
    from jobd.client import Client, SyncClient
    from jobd.context import JobContext

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner, name = node.value, node.attr
        if isinstance(owner, ast.Name) and owner.id == "jobs":
            assert hasattr(Client, name) or hasattr(SyncClient, name), f"{where}: Client.{name}"
        elif isinstance(owner, ast.Name) and owner.id == "jobd":
            assert _has(jobd, name), f"{where}: jobd.{name}"
        elif isinstance(owner, ast.Call) and ast.unparse(owner.func) == "jobd.current_job":
            fields = JobContext.__dataclass_fields__
            assert name in fields or hasattr(JobContext, name), f"{where}: JobContext.{name}"


def _check_module(name: str, where: str) -> None:
    """jobd's and the examples' modules must exist; of another library (an exporter the reader
    picks) the distribution must be one this project installs somewhere."""
    top = name.split(".")[0]
    if top in OWN_PACKAGES:
        assert importlib.util.find_spec(name), f"{where}: no module {name}"
    else:
        assert importlib.util.find_spec(top), f"{where}: no package {top} (an unknown library)"


def _has(module: ModuleType, name: str) -> bool:
    return (
        hasattr(module, name) or importlib.util.find_spec(f"{module.__name__}.{name}") is not None
    )


def environment_for(text: str) -> dict[str, str]:
    """A value of the right shape for each `${NAME}` that `text` reads."""
    values = {}
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text):
        if "ENCRYPTION" in name:
            values[name] = crypto.new_key()
        elif "URL" in name:
            values[name] = "redis://localhost:6379/0"
        else:
            values[name] = "k" * 48
    return values


def check_toml(code: str, where: str) -> None:
    document = tomllib.loads(code)
    functions = document.setdefault("functions", {})
    for entry in document.get("cron", []):
        functions.setdefault(entry.get("function", ""), {"path": "examples.jobs:cleanup"})
    text = tomli_w.dumps(document)
    loads(text, source=where, environ=environment_for(text))


def command_lines(code: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at
    `&&`, `||`, `|` and `;`, leading `sudo`, `export` and `NAME=value` words removed."""
    commands: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for word in [*lexer, ";"]:
            if word in ("&&", "||", "|", ";"):
                while current and (current[0] == "sudo" or re.match(r"\w+=", current[0])):
                    current.pop(0)
                if current and current[0] != "export":
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def check_sh(code: str, where: str) -> None:
    for words in command_lines(code):
        if words[0] == "jobd":
            _parse_jobd(words[1:], where)
        elif words[0] == "python" and words[1:2] == ["-m"]:
            module = words[2]
            assert importlib.util.find_spec(module), f"{where}: no module {module}"
        elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
            assert (REPO / words[1]).is_file(), f"{where}: no file {words[1]}"


def _parse_jobd(arguments: list[str], where: str) -> None:
    parser = build_parser()
    if "--help" in arguments or "--version" in arguments:
        return
    try:
        parser.parse_args(arguments)
    except SystemExit as error:
        raise AssertionError(f"{where}: jobd {shlex.join(arguments)}: usage error") from error


def check_console(code: str, where: str) -> None:
    """A terminal session: the lines after `$ ` are commands, the others their output."""
    commands = [line[2:] for line in code.splitlines() if line.startswith("$ ")]
    assert commands, f"{where}: a console block shows commands as `$ command`"
    check_sh("\n".join(commands) + "\n", where)


def check_ini(code: str, where: str) -> None:
    configparser.ConfigParser(strict=False, interpolation=None).read_string(code, where)


def check_dockerfile(code: str, where: str) -> None:
    logical = re.sub(r"\\\n", " ", code).splitlines()
    for line in logical:
        if line.strip() and not line.lstrip().startswith("#"):
            instruction = line.split()[0]
            assert instruction in DOCKERFILE_INSTRUCTIONS or instruction.startswith("--"), (
                f"{where}: {instruction} is not a Dockerfile instruction"
            )


def check_mermaid(code: str, where: str) -> None:
    for script in re.findall(r"(\w+)\.lua", code):
        assert (REPO / "jobd" / "redis" / "lua" / f"{script}.lua").is_file(), f"{where}: {script}"
    if code.startswith("stateDiagram"):
        states = set(re.findall(r"(\w+|\[\*\])\s*-->\s*(\w+|\[\*\])", code))
        names = {name for pair in states for name in pair} - {"[*]"}
        assert names <= {status.value for status in JobStatus}, (where, names)


CHECKS: dict[str, Any] = {
    "python": check_python,
    "toml": check_toml,
    "sh": check_sh,
    "console": check_console,
    "yaml": lambda code, where: list(yaml.safe_load_all(code)),
    "json": lambda code, where: json.loads(code),
    "ini": check_ini,
    "dockerfile": check_dockerfile,
    "mermaid": check_mermaid,
}
UNCHECKED = {"text"}
"""Output shown as it looks, not code."""


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_code_block(block: Block) -> None:
    assert block.lang, f"{block.where}: a code block needs a language (```text for output)"
    if block.lang in UNCHECKED:
        return
    assert block.lang in CHECKS, f"{block.where}: no check for ```{block.lang} blocks"
    code = resolve_snippet(block.included) if block.included else block.code
    if block.marker and block.marker[0] == "file":
        assert block.code == (REPO / block.marker[1]).read_text(), (
            f"{block.where}: differs from {block.marker[1]}: copy the file into the block"
        )
    CHECKS[block.lang](code, block.where)


def test_blocks_were_found_and_some_run() -> None:
    languages = {block.lang for block in BLOCKS}
    assert {"python", "toml", "sh", "yaml", "mermaid"} <= languages
    assert sum(block.runnable for block in BLOCKS) >= 2
    assert any(block.included for block in BLOCKS)


def test_a_broken_block_fails_its_check() -> None:
    """The checks can fail: a misspelt key, option, import and state are each caught."""
    for check, code in [
        (check_toml, "[worker]\nconcurency = 4\n"),
        (check_sh, "jobd enqueue send_email --wiat 10s\n"),
        (check_python, "from jobd.client import Clinet\n"),
        (check_python, "await jobs.enqueue_later('f')\n"),
        (check_python, "await jobd.current_job().emit_token('x')\n"),
        (check_mermaid, "stateDiagram-v2\n    queued --> done\n"),
        (check_sh, "python -m examples.no_such_module\n"),
    ]:
        with pytest.raises((AssertionError, ValueError, ImportError, ConfigError)):
            check(code, "broken")


# -- the README -------------------------------------------------------------------------------


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    first = blocks(REPO / "README.md")[0]
    install, tests = first.code.splitlines()
    assert install.startswith("pip install -e '.[embedded]' && jobd --config config/jobs.toml")
    assert tests.startswith("pip install -e '.[test]' && python -m pytest -q ")
    # CI runs exactly the README's test command
    assert "\npython -m pytest -q\n" in (REPO / ".ci" / "run").read_text()
    shown = {block.marker[1] for block in BLOCKS if block.marker and block.marker[0] == "file"}
    assert shown == {
        "examples/quickstart/jobs.py", "examples/quickstart/jobs.toml", "examples/quickstart/app.py",
    }  # fmt: skip


def test_docs_pages_that_the_code_names_exist() -> None:
    """Error messages, docstrings and tests point readers to docs/*.md: those pages exist."""
    named: set[str] = set()
    for folder in ("jobd", "tests", "examples", "bench", "deploy", "systemd", "config"):
        for path in (REPO / folder).rglob("*"):
            suffixes = (".py", ".toml", ".md", ".yaml", ".yml", ".lua")
            if path.is_file() and path.suffix in suffixes and ".venvs" not in path.parts:
                named.update(re.findall(r"\bdocs/[\w/.-]+\.md\b", path.read_text()))
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert not missing, missing
