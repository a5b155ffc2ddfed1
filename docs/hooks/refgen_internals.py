"""The pages on how jobd works: the Redis key schema, the Lua scripts' headers, the packages'
module lists, the fault scenarios of the failure study, and the latest benchmark."""

from __future__ import annotations

import ast
import re
import unicodedata
from collections.abc import Iterator

from refgen_text import ROOT, anchor, escape, log

# -- Redis ----------------------------------------------------------------------------------------

_KEY_LINE = re.compile(
    r"^    (?P<key><prefix>\S+)\s+"
    r"(?P<type>(?:STREAM|ZSET|SET|STR|LIST|HASH)(?=\s)|pub/sub channel:)?\s*(?P<what>.*)$"
)


def key_entries() -> list[tuple[str, str, str]]:
    """(key, Redis type, what it holds) of the schema in jobd/redis/keys.py's docstring."""
    from jobd.redis import keys

    entries: list[list[str]] = []
    for line in (keys.__doc__ or "").splitlines():
        match = _KEY_LINE.match(line)
        if match:
            kind = (match["type"] or "").removesuffix(":")
            entries.append([match["key"], kind, match["what"]])
        elif entries and line.startswith(" " * 10) and line.strip():
            entries[-1][2] += " " + line.strip()
    return [(key, kind, what) for key, kind, what in entries]


def generate_keys() -> str:
    out = ["| key | type | what it holds |", "|---|---|---|"]
    for key, kind, what in key_entries():
        out.append(f"| `{key}` | {kind} | {escape(what)} |")
    return "\n".join(out) + "\n"


def lua_headers() -> Iterator[tuple[str, str]]:
    """(file name, header comment) of every Lua script, in name order."""
    for path in sorted((ROOT / "jobd" / "redis" / "lua").glob("*.lua")):
        header: list[str] = []
        for line in path.read_text().splitlines():
            if not line.startswith("--"):
                break
            header.append(line[2:].removeprefix(" "))
        yield path.name, "\n".join(header)


def text_sections(entries: Iterator[tuple[str, str]], missing: str) -> str:
    """One heading (with its anchor) and one text block per (name, text); `missing` is logged,
    with the name, for an empty text."""
    out: list[str] = []
    for name, text in entries:
        if not text:
            log.warning(missing, name)
        out.append(f"### `{name}` {{#{anchor(name)}}}\n")
        out.append(f"```text\n{text}\n```\n")
    return "\n".join(out)


def generate_lua() -> str:
    return text_sections(lua_headers(), "Lua script %s has no header comment")


# -- modules --------------------------------------------------------------------------------------


def module_entries() -> Iterator[tuple[str, str]]:
    """(package folder, its __init__ docstring, which lists its modules) of every jobd package."""
    for init in sorted((ROOT / "jobd").glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        yield f"jobd/{init.parent.name}/", docstring


def generate_modules() -> str:
    return text_sections(module_entries(), "%s__init__.py has no docstring listing its modules")


# -- benchmark ----------------------------------------------------------------------------------


def generate_bench() -> str:
    """The date, machine and versions, and the two tables of bench/results/latest.md."""
    text = (ROOT / "bench" / "results" / "latest.md").read_text()
    bullets = [line for line in text.splitlines() if line.startswith("- ")][:5]
    tables = re.findall(r"(?:^\|.*\|\n)+", text, re.MULTILINE)[:2]
    return "\n".join(bullets) + "\n\n" + "\n".join(tables)


# -- fault tests ------------------------------------------------------------------------------------


def fault_entries() -> list[dict[str, str]]:
    """The fault scenarios of docs/reliability.md §5.2: title, fault, what must hold, how run."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    section = text.split("\n## 5.2 Fault scenarios\n", 1)[1].split("\n## 5.3", 1)[0]
    entries = []
    for chunk in re.split(r"\n(?=### F\d+\. )", section)[1:]:
        title = chunk.splitlines()[0].removeprefix("### ")
        items = {}
        for item in re.split(r"\n(?=- )", chunk.split("\n", 1)[1].strip()):
            label, _, body = item.removeprefix("- ").partition(":")
            items[label.split(" (")[0].strip()] = " ".join(body.split())
        tests = next((label for label in re.findall(r"- (Tests[^:]*):", chunk)), "Tests")
        marker = re.search(r"\(`?(-m \w+)`?\)", tests)
        if items.get("Tests", "").startswith("none"):
            run = "not tested"
        else:
            run = f"`{marker[1]}`" if marker else "CI"
        holds = items.get("Must hold") or f"expected, not verified: {items.get('Expected', '')}"
        entries.append(
            {"title": title, "fault": items.get("Fault", ""), "holds": holds, "run": run}
        )
    return entries


def _from_reliability(text: str) -> str:
    """Text of docs/reliability.md shown on a page of docs/how-it-works/: its links re-pointed."""
    text = re.sub(r"\]\(#", "](../reliability.md#", text)
    return re.sub(r"\]\((?=[\w-]+\.md)", "](../", text)


def _slug(title: str) -> str:
    """The id Python-Markdown's toc gives a heading (its default slugify), without importing it:
    the tests run where only the test extra is installed."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_title).strip().lower())


def generate_faults() -> str:
    out = ["| scenario | fault | what the test shows | run |", "|---|---|---|---|"]
    for entry in fault_entries():
        link = f"[{entry['title']}](../reliability.md#{_slug(entry['title'])})"
        cells = [_from_reliability(entry["fault"]), _from_reliability(entry["holds"])]
        out.append(f"| {link} | {cells[0]} | {cells[1]} | {entry['run']} |")
    return "\n".join(out) + "\n"
