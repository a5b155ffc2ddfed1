"""The Lua scripts: loaded once from `jobd/lua/*.lua` and run with EVALSHA, reloaded on NOSCRIPT
(after a Redis restart or SCRIPT FLUSH). `_lib.lua` is prepended to every script."""

from __future__ import annotations

import hashlib
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
    "enqueue",
    "finish",
    "observe",
    "promote",
    "reap",
    "renew",
    "requeue",
    "retry",
)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script with its SHA1, as Redis will know it."""

    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return resources.files("jobd").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _load_all() -> dict[str, Script]:
    library = _read("_lib")
    scripts = {}
    for name in SCRIPT_NAMES:
        source = library + "\n" + _read(name)
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts


SCRIPTS: dict[str, Script] = _load_all()


async def run_async(
    client: redis.asyncio.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]
) -> Any:
    """Run a script on an asyncio client; load it first if Redis does not know it."""
    script = SCRIPTS[name]
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        await client.execute_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def run_sync(client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]) -> Any:
    """Run a script on a synchronous client; load it first if Redis does not know it."""
    script = SCRIPTS[name]
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        client.execute_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
