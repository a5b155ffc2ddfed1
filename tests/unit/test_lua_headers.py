"""Every Lua script documents itself, and its wrappers pass the keys its header declares."""

from __future__ import annotations

import re

import pytest

from jobd.redis.scripts import (
    SCRIPT_NAMES,
    SCRIPTS,
    SHEBANG,
    _read,
    declared_keys,
    header,
    run_sync,
)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_header_says_what_why_keys_arguments_and_reply(name: str) -> None:
    text = header(_read(name))
    assert text.startswith(f"-- {name}.lua: "), "the header opens with the file name and purpose"
    assert "Atomic" in text, "the header says why the operation must be atomic"
    assert "KEYS[1]" in text
    assert "Returns" in text
    assert "ARGV" in text or name == "observe"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_keys_in_header_are_numbered_without_gaps(name: str) -> None:
    numbers = sorted({int(n) for n in re.findall(r"KEYS\[(\d+)\]", header(_read(name)))})
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_body_uses_only_declared_keys(name: str) -> None:
    text = _read(name)
    body = text[len(header(text)) :]
    fixed, more = declared_keys(text)
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    assert used <= set(range(1, fixed + 1)), "every KEYS[i] the body reads is in the header"
    if not more:
        assert "#KEYS" not in body


def test_a_wrapper_passing_the_wrong_keys_fails_before_redis() -> None:
    with pytest.raises(ValueError, match=r"claim.lua declares 13 keys, got 2"):
        run_sync(None, "claim", ["a", "b"], [])  # type: ignore[arg-type]


def test_each_script_carries_the_library_definitions_it_uses_and_no_others() -> None:
    library = _read("_lib")
    definition = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)
    defined = set(definition.findall(library))
    preamble = library[: library.index("\nlocal ") + 1]
    for name, script in SCRIPTS.items():
        source = script.source.removeprefix(SHEBANG)
        assert source.startswith(preamble), name
        carried = set(definition.findall(source[: len(source) - len(_read(name))]))
        code = re.sub(r"--[^\n]*", "", source)
        used = set(re.findall(r"[A-Za-z_]\w*", code)) & defined
        assert used == carried, f"{name}.lua: missing {used - carried}, unused {carried - used}"
    # a script that needs little carries little: each definition costs every call of it
    assert "limit_state" in SCRIPTS["claim"].source
    assert "limit_state" not in SCRIPTS["enqueue"].source
    assert len({script.sha for script in SCRIPTS.values()}) == len(SCRIPTS)
