"""The configuration reference: every jobs.toml key, from jobd/config/settings.py."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from refgen_text import anchor, escape, log, sentence

# -- jobs.toml ----------------------------------------------------------------------------------


def field_comments(cls: type[Any]) -> dict[str, str]:
    """The comment lines right above each field of the dataclass `cls` (and a docstring right
    below it), joined into one text per field."""
    source = inspect.getsource(sys.modules[cls.__module__])
    lines = source.splitlines()
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    comments: dict[str, str] = {}
    body = node.body
    for index, statement in enumerate(body):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        above: list[str] = []
        number = statement.lineno - 2
        while number >= 0 and lines[number].strip().startswith("#"):
            above.insert(0, lines[number].strip().lstrip("#").strip())
            number -= 1
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            above.append(inspect.cleandoc(following.value.value))
        comments[statement.target.id] = " ".join(above)
    return comments


def _derived(field: dataclasses.Field[Any]) -> bool:
    return bool(field.metadata.get("derived"))


def _type_name(hint: Any) -> str:
    from jobd.config.settings import Rate

    if hint is float:
        return "duration"
    if hint is int or hint == int | None:
        return "integer"
    if hint is bool:
        return "boolean"
    if hint is str or hint == str | None:
        return "string"
    if hint == Rate | None:
        return 'rate ("N/s", "N/m", "N/h" or N per a duration)'
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return "one of " + ", ".join(f'`"{member.value}"`' for member in hint)
    if hint == tuple[str, ...]:
        return "array of strings"
    if hint == tuple[Any, ...]:
        return "array (JSON values)"
    if hint == Mapping[str, Any]:
        return "table (JSON values)"
    return "table"


def _default(field: dataclasses.Field[Any], hint: Any) -> str:
    from jobd.config.durations import format_duration

    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if value is None:
        return "unset"
    if hint is float:
        return f'`"{format_duration(value)}"`'
    if isinstance(value, StrEnum):
        return f'`"{value.value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | int | tuple | Mapping):
        shown = json.dumps(list(value) if isinstance(value, tuple) else value, default=dict)
        return f"`{shown}`"
    return "see below"


def _doc(cls: type[Any], name: str) -> str:
    """A field's description; "see OtherSettings" (and no comment at all, for a function's
    copy of a [defaults] key) take the description of the same key in [defaults]."""
    from jobd.config.settings import DefaultsSettings, FunctionSettings

    text = field_comments(cls).get(name, "")
    if cls is FunctionSettings and (not text or text.startswith("see ")):
        inherited = field_comments(DefaultsSettings).get(name, "")
        text = f"{inherited}; default: the value in [defaults]" if inherited else text
    return text


def _nested(hint: Any) -> tuple[str, type[Any]] | None:
    """How a settings field holds other settings: ("table", cls) for a sub-table, ("named",
    cls) for [section.NAME] tables, ("array", cls) for [[section]] entries."""
    if dataclasses.is_dataclass(hint):
        return "table", typing.cast(type[Any], hint)
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Mapping and len(arguments) == 2 and dataclasses.is_dataclass(arguments[1]):
        return "named", arguments[1]
    if origin is tuple and arguments and dataclasses.is_dataclass(arguments[0]):
        return "array", arguments[0]
    return None


def config_entries() -> Iterator[tuple[str, str, str, str, str]]:
    """(table heading, key path, type, default, description) of every key of jobs.toml, walking
    `Settings` so that a new section or field appears by itself."""
    from jobd.config.settings import Settings

    def walk(cls: type[Any], path: str, heading: str) -> Iterator[tuple[str, str, str, str, str]]:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if _derived(field):
                continue
            hint = hints[field.name]
            key = f"{path}.{field.name}" if path else field.name
            nested = _nested(hint)
            if nested is None:
                yield heading, key, _type_name(hint), _default(field, hint), _doc(cls, field.name)
            elif nested[0] == "table" and path:
                yield heading, key, "table", "see its keys", _doc(cls, field.name)
                yield from walk(nested[1], key, heading)
            elif nested[0] == "table":
                yield from walk(nested[1], key, f"[{key}]")
            elif nested[0] == "named":
                yield from walk(nested[1], f"{key}.NAME", f"[{key}.NAME]")
            else:
                yield from walk(nested[1], key, f"[[{key}]]")

    yield from walk(Settings, "", "")


def generate_config() -> str:
    out: list[str] = []
    heading = None
    for table, key, type_name, default, doc in config_entries():
        if not doc:
            log.warning("jobs.toml key %s has no description (a comment above its field)", key)
        if table != heading:
            heading = table
            out.append(f"\n## `{table}` {{#{anchor(table)}}}\n")
        out.append(f"### `{key}` {{#{key}}}\n")
        out.append(f"Type: {type_name}. Default: {default}.\n")
        out.append(f"{escape(sentence(doc))}\n")
    return "\n".join(out)
