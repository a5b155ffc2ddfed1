"""`jobd config show` (the effective settings, secrets hidden) and `jobd config init` (a commented
starter file).

What `config show` hides: the password of `redis.url` (user part and `password=` query), and every
value read from the environment (`${NAME}`), because that is where secrets live. A value that is
inherited from a hidden one (a function's queue from `worker.queues`, its retry from
`defaults.retry`) is hidden as well. `redis.url` itself is shown with only its password hidden.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from jobd import crypto
from jobd.cli.shared import CommandFailed
from jobd.config import loader as config
from jobd.config.fields import has_reference
from jobd.config.settings import REDACTED, Settings

TEMPLATE = "jobs.toml"
"""The starter file in jobd/config/templates/, packaged with jobd."""


def show(settings: Settings) -> int:
    """`jobd config show`: print the effective settings as TOML."""
    document = tomllib.loads(config.dump(settings))
    if settings.worker.signing_key:
        document["worker"]["signing_key"] = REDACTED  # config.dump leaves the secret out
    keys = settings.worker.encryption_keys
    if keys:  # left out too; shown by their ids, which are not secret
        document["worker"]["encryption_keys"] = [REDACTED] * len(keys)
    if settings.source is not None:
        raw = tomllib.loads(Path(settings.source).read_text(encoding="utf-8"))
        hidden: list[Any] = []
        _hide(raw, document, (), hidden)
        if hidden and "functions" in document:
            _hide_copies(document["functions"], hidden)
    source = settings.source if settings.source is not None else "defaults"
    print(f"# Effective configuration from {source}, defaults filled in.")
    print(
        f'# Values read from the environment are shown as "{REDACTED}"; so is the Redis password.'
    )
    if keys:
        ids = ", ".join(crypto.key_id(crypto.parse_key(key)) for key in keys)
        print(f"# worker.encryption_keys: key ids {ids} (the first encrypts)")
    print(tomli_w.dumps(document), end="")
    return 0


def _hide(raw: Any, shown: Any, path: tuple[str | int, ...], hidden: list[Any]) -> None:
    """Replace each value of `shown` whose counterpart in the file `raw` reads the environment."""
    pairs: list[tuple[str | int, Any]]
    if isinstance(raw, dict) and isinstance(shown, dict):
        pairs = [(key, value) for key, value in raw.items() if key in shown]
    elif isinstance(raw, list) and isinstance(shown, list) and len(raw) == len(shown):
        pairs = list(enumerate(raw))
    else:
        return
    for key, value in pairs:
        where = (*path, key)
        if has_reference(value):
            if where == ("redis", "url"):
                continue  # config.dump shows it with the password hidden
            hidden.extend(_scalars(shown[key]))
            shown[key] = REDACTED
        else:
            _hide(value, shown[key], where, hidden)


def _hide_copies(shown: Any, hidden: list[Any]) -> None:
    """Hide inherited copies of hidden values (compared with their types, so 1 is not True)."""
    items: list[tuple[Any, Any]]
    if isinstance(shown, dict):
        items = list(shown.items())
    elif isinstance(shown, list):
        items = list(enumerate(shown))
    else:
        return
    for key, value in items:
        if isinstance(value, dict | list):
            _hide_copies(value, hidden)
        elif _typed(value) in hidden:
            shown[key] = REDACTED


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [typed for item in value for typed in _scalars(item)]
    return [_typed(value)]


def _typed(value: Any) -> Any:
    return (type(value).__name__, value)


def init(path: str) -> int:
    """`jobd config init`: write the commented starter file; never overwrite one."""
    target = Path(path)
    template = (
        resources.files("jobd.config").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")
    )
    try:
        with target.open("x", encoding="utf-8") as file:
            file.write(template)
    except FileExistsError:
        raise CommandFailed(
            f"{target} already exists; remove it or give another path (jobd config init PATH)"
        ) from None
    except OSError as error:
        raise CommandFailed(f"cannot write {target}: {error.strerror or error}") from None
    print(f"wrote {target}")
    print(f"next: edit it, then run `jobd check --config {target}`")
    return 0
