"""The Lua scripts: loaded once from `jobd/redis/lua/*.lua` and run with EVALSHA, reloaded on NOSCRIPT
(after a Redis restart or SCRIPT FLUSH). `_lib.lua` is prepended to every script."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from jobd.errors import NotReplicated
from jobd.redis.connect import execute_raw

Argument = str | bytes | int | float

SCRIPT_NAMES = (
    "abort",
    "acquire",
    "claim",
    "cron",
    "dead_purge",
    "dead_retry",
    "detach",
    "emit",
    "enqueue",
    "finish",
    "flow",
    "follow",
    "link",
    "observe",
    "promote",
    "reap",
    "release",
    "renew",
    "requeue",
    "resolve",
    "retry",
    "set_cost",
    "settled",
    "throttle",
    "ungate",
    "wait",
)


ALLOW_OOM = frozenset(SCRIPT_NAMES) - {
    "enqueue", "flow", "link", "wait", "cron", "acquire", "emit", "follow",
}  # fmt: skip
"""Scripts that Redis runs even at maxmemory (shebang flag allow-oom, Redis 7): they move jobs that
exist (claim, heartbeats, finish, retry, reap ...), so that workers finish what Redis holds while
producers are refused. `enqueue`, `flow` (with `link`) and `cron` create jobs, `acquire` a producer's hold: at
maxmemory Redis refuses them with OOM before they write anything. Found by tests/chaos F20:
without the flag a full Redis also refused every heartbeat and finish, and the workers stalled.
`emit` and `follow` add job events, refused at maxmemory too: the worker then drops the batch,
and readers are told of the gap (docs/events.md)."""
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
    return resources.files("jobd.redis").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


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


_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z_]\w*")


def _code_words(text: str) -> set[str]:
    """The identifiers of Lua `text`, comments left out."""
    return set(_WORD.findall(re.sub(r"--[^\n]*", "", text)))


def library_for(text: str, library: str) -> str:
    """The part of `_lib.lua` that script `text` uses: its preamble, then each top-level
    definition the script needs (directly or through another one), in the library's order. Every
    definition Redis runs costs on each call (a closure built per run: about a quarter of a
    one-job script call with the whole library), so a script carries only its own."""
    starts = [match.start() for match in _DEFINITION.finditer(library)]
    blocks = {
        _DEFINITION.match(library, start).group(1): library[start:end]  # type: ignore[union-attr]
        for start, end in zip(starts, [*starts[1:], len(library)], strict=True)
    }
    needed: set[str] = set()
    pending = _code_words(text) & blocks.keys()
    while pending:
        name = pending.pop()
        needed.add(name)
        pending |= (_code_words(blocks[name]) & blocks.keys()) - needed
    return library[: starts[0]] + "".join(block for name, block in blocks.items() if name in needed)


def _build(name: str, library: str) -> Script:
    text = _read(name)
    source = (SHEBANG if name in ALLOW_OOM else "") + library_for(text, library) + "\n" + text
    key_count, more_keys = declared_keys(text)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(), key_count, more_keys)


class _Scripts(Mapping[str, Script]):
    """The scripts by name, each built (read, its library prepended, hashed) at its first use: a
    process uses a few of them, and building all took about 9 ms of every start, producers'
    included (bench.startup)."""

    def __init__(self) -> None:
        self._built: dict[str, Script] = {}
        self._library: str | None = None

    def __getitem__(self, name: str) -> Script:
        script = self._built.get(name)
        if script is None:
            if name not in SCRIPT_NAMES:
                raise KeyError(name)
            if self._library is None:
                self._library = _read("_lib")
            script = self._built[name] = _build(name, self._library)
        return script

    def __iter__(self) -> Iterator[str]:
        return iter(SCRIPT_NAMES)

    def __len__(self) -> int:
        return len(SCRIPT_NAMES)


SCRIPTS: Mapping[str, Script] = _Scripts()


async def run_async(
    client: redis.asyncio.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]
) -> Any:
    """Run a script on an asyncio client by its SHA; where Redis does not know it yet (a restart,
    SCRIPT FLUSH, another cluster node), EVAL sends the source once, which also caches it."""
    script = _checked(name, keys)
    try:
        return await execute_raw(client, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await execute_raw(client, "EVAL", script.source, len(keys), *keys, *args)


ScriptArguments = Sequence[tuple[Sequence[str], Sequence[Argument]]]


def _many(pipe: Any, script: Script, calls: ScriptArguments, indexes: Sequence[int] | None) -> Any:
    for i in range(len(calls)) if indexes is None else indexes:
        keys, args = calls[i]
        if indexes is None:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        else:
            pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)
    return pipe


def _unknown(replies: list[Any]) -> list[int]:
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


async def run_async_many(
    client: redis.asyncio.Redis, name: str, calls: ScriptArguments
) -> list[Any]:
    """Run a script once per `(keys, args)` in one pipeline (not a transaction): the replies in
    order, an exception object in place of the reply of a call Redis refused (OOM, ...). Calls
    Redis did not know the script for are sent again with its source (the script must be safe to
    run twice, as every jobd script is)."""
    script = _checked(name, calls[0][0]) if calls else SCRIPTS[name]
    pipe = _many(client.pipeline(transaction=False), script, calls, None)
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    if missing := _unknown(replies):
        pipe = _many(client.pipeline(transaction=False), script, calls, missing)
        for i, reply in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    return replies


def run_sync_many(client: redis.Redis, name: str, calls: ScriptArguments) -> list[Any]:
    """`run_async_many` on a synchronous client."""
    script = _checked(name, calls[0][0]) if calls else SCRIPTS[name]
    replies: list[Any] = _many(client.pipeline(transaction=False), script, calls, None).execute(
        raise_on_error=False
    )
    if missing := _unknown(replies):
        pipe = _many(client.pipeline(transaction=False), script, calls, missing)
        for i, reply in zip(missing, pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    return replies


async def run_async_after(
    client: redis.asyncio.Redis,
    first: Sequence[Argument],
    name: str,
    keys: Sequence[str],
    args: Sequence[Argument],
) -> tuple[Any, Any]:
    """Command `first`, then the script, sent together on one connection of either client kind:
    Redis runs the script as soon as `first` returns, even a blocking one, without a round trip
    in between. NoScriptError if Redis does not know the script (`first` has run then)."""
    script = _checked(name, keys)
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*first)
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    first_reply, reply = await pipe.execute()
    return first_reply, reply


def run_sync(client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[Argument]) -> Any:
    """`run_async` on a synchronous client."""
    script = _checked(name, keys)
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        return client.execute_command("EVAL", script.source, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def _not_replicated(replicas: int, acknowledged: int, timeout_ms: int) -> NotReplicated:
    return NotReplicated(
        f"Redis stored the write but {acknowledged} of {replicas} replica(s) confirmed it within "
        f'{timeout_ms / 1000:g} s (redis.enqueue_durability = "replica"), so a failover could '
        "still lose it: enqueue again with the same job id (that is safe), and check the replicas"
    )


def _replicated_pipeline(
    client: Any, script: Script, keys: Sequence[str], args: Sequence[Argument], by_sha: bool,
    replicas: int, timeout_ms: int,
) -> Any:  # fmt: skip
    """The script and a WAIT for `replicas` on one connection (WAIT counts that connection's
    writes); a pipeline of either client kind."""
    pipe = client.pipeline(transaction=False)
    if by_sha:
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    else:
        pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    return pipe


def _checked_replies(replies: list[Any], replicas: int, timeout_ms: int) -> Any:
    reply, acknowledged = replies
    if acknowledged < replicas:
        raise _not_replicated(replicas, acknowledged, timeout_ms)
    return reply


async def run_async_replicated(
    client: redis.asyncio.Redis,
    name: str,
    keys: Sequence[str],
    args: Sequence[Argument],
    replicas: int,
    timeout_ms: int,
) -> Any:
    """`run_async`, then WAIT until `replicas` confirm the write; NotReplicated if fewer do
    within `timeout_ms` (the write itself stays)."""
    script = _checked(name, keys)
    try:
        pipe = _replicated_pipeline(client, script, keys, args, True, replicas, timeout_ms)
        replies = await pipe.execute()
    except NoScriptError:
        pipe = _replicated_pipeline(client, script, keys, args, False, replicas, timeout_ms)
        replies = await pipe.execute()
    return _checked_replies(replies, replicas, timeout_ms)


def run_sync_replicated(
    client: redis.Redis,
    name: str,
    keys: Sequence[str],
    args: Sequence[Argument],
    replicas: int,
    timeout_ms: int,
) -> Any:
    """`run_async_replicated` on a synchronous client."""
    script = _checked(name, keys)
    try:
        replies = _replicated_pipeline(
            client, script, keys, args, True, replicas, timeout_ms
        ).execute()
    except NoScriptError:
        replies = _replicated_pipeline(
            client, script, keys, args, False, replicas, timeout_ms
        ).execute()
    return _checked_replies(replies, replicas, timeout_ms)
