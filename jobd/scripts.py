"""The Lua scripts: loaded once from `jobd/lua/*.lua` and run with EVALSHA, reloaded on NOSCRIPT
(after a Redis restart or SCRIPT FLUSH). `_lib.lua` is prepended to every script."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

Argument = str | bytes | int | float

SCRIPT_NAMES = (
    "abort",
    "claim",
    "cron",
    "dead_purge",
    "dead_retry",
    "enqueue",
    "finish",
    "observe",
    "promote",
    "reap",
    "renew",
    "requeue",
    "retry",
)


ALLOW_OOM = frozenset(SCRIPT_NAMES) - {"enqueue", "cron"}
"""Scripts that Redis runs even at maxmemory (shebang flag allow-oom, Redis 7): they move jobs that
exist (claim, heartbeats, finish, retry, reap ...), so that workers finish what Redis holds while
producers are refused. `enqueue` and `cron` create jobs: at maxmemory Redis refuses them with OOM
before they write anything (their first write is INCR). Found by tests/chaos F20: without the flag
a full Redis also refused every heartbeat and finish, and the workers stalled."""
SHEBANG = "#!lua flags=allow-oom\n"


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script with its SHA1, as Redis will know it."""

    name: str
    source: str
    sha: str
    key_count: int
    """Keys the header declares (KEYS[1]..KEYS[n])."""
    more_keys: bool
    """True when the header also declares a variable tail (KEYS[n..])."""


_HEADER_KEY = re.compile(r"KEYS\[(\d+)(\.\.)?\]")


def header(text: str) -> str:
    """The leading comment block of a script."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def declared_keys(text: str) -> tuple[int, bool]:
    """(fixed key count, variable tail?) as the script's header declares them."""
    fixed, more = 0, False
    for number, tail in _HEADER_KEY.findall(header(text)):
        if tail:
            more = True
        else:
            fixed = max(fixed, int(number))
    return fixed, more


def _read(name: str) -> str:
    return resources.files("jobd").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _checked(name: str, keys: Sequence[str]) -> Script:
    """The script, after checking that the caller passes the keys its header declares: a wrapper
    that drifts from its script fails loudly instead of touching the wrong key."""
    script = SCRIPTS[name]
    if len(keys) != script.key_count and not (script.more_keys and len(keys) > script.key_count):
        raise ValueError(
            f"{name}.lua declares {script.key_count} keys{' or more' if script.more_keys else ''}, "
            f"got {len(keys)}"
        )
    return script


def _load_all() -> dict[str, Script]:
    library = _read("_lib")
    scripts = {}
    for name in SCRIPT_NAMES:
        text = _read(name)
        source = (SHEBANG if name in ALLOW_OOM else "") + library + "\n" + text
        key_count, more_keys = declared_keys(text)
        scripts[name] = Script(
            name, source, hashlib.sha1(source.encode()).hexdigest(), key_count, more_keys
        )
    return scripts


SCRIPTS: dict[str, Script] = _load_all()


async def run_async(
    client: redis.asyncio.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]
) -> Any:
    """Run a script on an asyncio client; load it first if Redis does not know it."""
    script = _checked(name, keys)
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        await client.execute_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def run_sync(client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]) -> Any:
    """Run a script on a synchronous client; load it first if Redis does not know it."""
    script = _checked(name, keys)
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        client.execute_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
