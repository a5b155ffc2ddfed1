"""Load `jobs.toml` into a frozen `Settings`, reporting every problem at once in one `ConfigError`.

One walk guided by the dataclasses of `jobd.config.settings` reads the TOML; `jobd.config.fields` converts
the single values. The only module of jobd that reads `os.environ`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jobd.config import fields as check
from jobd.config import limits as limit_rules
from jobd.config.durations import format_duration
from jobd.config.fields import Reader, join_path, shown_value
from jobd.config.settings import (
    CronSettings,
    DefaultsSettings,
    Durability,
    EventsSettings,
    FunctionSettings,
    HookSettings,
    HttpSettings,
    LimitSettings,
    Rate,
    RedisSettings,
    RetrySettings,
    Settings,
    TracingSettings,
    WorkerSettings,
)
from jobd.errors import ConfigError
from jobd.model import MAX_PRIORITY
from jobd.redis.connect import topology_kind
from jobd.serializer import MAX_DEPTH_LIMIT

__all__ = ["dump", "load", "loads", "warnings_for"]

STRING_SOURCE = "<string>"
LONG_DRAIN_TIMEOUT = 25 * 60.0
WORKER_OWN_CALLS = 8
"""Redis calls a worker may make at once beside one per running job (claims, finishes, heartbeat,
promotion, cron): the least `max_connections` in redis.url may allow above worker.concurrency."""

SectionType = typing.TypeVar("SectionType")

_HINTS: dict[type[Any], dict[str, Any]] = {}

_DECODE_POSITION = re.compile(
    r"(?s)(?P<message>.*) \((?P<where>at line \d+, column \d+|at end of document)\)"
)

# Value rules by (dataclass, field): checked after the type conversion, on keys present in the file.
_RULES: dict[tuple[type, str], check.Rule] = {
    (RedisSettings, "url"): check.redis_url,
    (RedisSettings, "key_prefix"): check.name("key prefix"),
    (RedisSettings, "socket_timeout"): check.positive,
    (RedisSettings, "connect_timeout"): check.positive,
    (RedisSettings, "replica_timeout"): check.positive,
    (RedisSettings, "data_dir"): check.directory,
    (HttpSettings, "max_loop_lag"): check.positive,
    (EventsSettings, "max_length"): check.at_least(1),
    (EventsSettings, "max_data_bytes"): check.byte_limit,
    (EventsSettings, "buffer"): check.at_least(1),
    (WorkerSettings, "concurrency"): check.at_least(1),
    (WorkerSettings, "lease_timeout"): check.lease_timeout,
    (WorkerSettings, "max_lost"): check.at_least(1),
    (WorkerSettings, "sync_threads"): check.at_least(0),
    (WorkerSettings, "max_payload_bytes"): check.byte_limit,
    (WorkerSettings, "max_result_bytes"): check.byte_limit,
    (WorkerSettings, "max_json_depth"): check.between(1, MAX_DEPTH_LIMIT),
    (WorkerSettings, "signing_key"): check.signing_key,
    (DefaultsSettings, "timeout"): check.positive,
    (DefaultsSettings, "max_tries"): check.at_least(1),
    (RetrySettings, "base"): check.positive,
    (HookSettings, "startup"): check.import_path,
    (HookSettings, "shutdown"): check.import_path,
    (FunctionSettings, "path"): check.import_path,
    (FunctionSettings, "queue"): check.name("queue name"),
    (FunctionSettings, "timeout"): check.positive,
    (FunctionSettings, "max_tries"): check.at_least(1),
    (CronSettings, "name"): check.name("cron name"),
    (CronSettings, "schedule"): check.cron_schedule,
    (CronSettings, "timezone"): check.time_zone,
    (CronSettings, "queue"): check.optional_name("queue name"),
    (CronSettings, "priority"): check.between(-MAX_PRIORITY, MAX_PRIORITY),
    (LimitSettings, "concurrency"): check.at_least(1),
    (LimitSettings, "max_throttled"): check.positive,
}


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the TOML file at `path`; `${NAME}` reads `environ` (default: os.environ)."""
    label = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            [f"{label}: cannot read the file ({type(error).__name__}: {reason})"]
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            [f"{label}: not UTF-8 text ({error.reason} at byte {error.start})"]
        ) from None
    return _parse(text, label, Path(path), os.environ if environ is None else environ)


def loads(
    text: str, *, source: str = STRING_SOURCE, environ: Mapping[str, str] | None = None
) -> Settings:
    """Check TOML `text`, named `source` in messages; `${NAME}` reads `environ` (os.environ)."""
    path = None if source == STRING_SOURCE else Path(source)
    return _parse(text, source, path, os.environ if environ is None else environ)


def _parse(text: str, label: str, path: Path | None, environ: Mapping[str, str]) -> Settings:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{label}: {_decode_message(str(error))}"]) from None
    except RecursionError:
        raise ConfigError([f"{label}: values are nested too deeply to parse"]) from None
    reader = Reader(label, environ, [])
    settings = _settings(reader, document, path)
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


def _decode_message(message: str) -> str:
    """tomllib's "Invalid value (at line 3, column 7)" as "line 3, column 7: Invalid value"."""
    match = _DECODE_POSITION.fullmatch(message)
    if match is None:
        return message
    return f"{match['where'].replace('at line', 'line')}: {match['message']}"


def _settings(reader: Reader, document: dict[str, Any], path: Path | None) -> Settings:
    sections = [field.name for field in dataclasses.fields(Settings) if not _derived(field)]
    reader.check_keys(document, sections, "", _SECTION_KEYS)
    # In file order, so that problems are listed the way a reader meets them in the template.
    redis = _section(reader, RedisSettings, document, "redis")
    worker = _section(reader, WorkerSettings, document, "worker")
    _pool_limit(reader, redis, worker)
    _secrets_from_environment(reader, document)
    http = _http(reader, document)
    defaults = _section(reader, DefaultsSettings, document, "defaults")
    hooks = _section(reader, HookSettings, document, "hooks")
    events = _section(reader, EventsSettings, document, "events")
    tracing = _section(reader, TracingSettings, document, "tracing")
    if tracing.enabled and importlib.util.find_spec("opentelemetry") is None:
        reader.problem(
            "tracing.enabled",
            "needs the OpenTelemetry API, which is not installed: pip install 'jobd[otel]' "
            "(and the SDK and exporter you send spans with)",
        )
    functions = _functions(reader, document, worker, defaults)
    cron = _cron(reader, document)
    limits, defined = _limits(reader, document)
    limit_rules.check_references(reader, functions, limits, defined)
    return Settings(
        source=path,
        redis=redis,
        worker=worker,
        http=http,
        defaults=defaults,
        hooks=hooks,
        events=events,
        tracing=tracing,
        functions=MappingProxyType(functions),
        cron=cron,
        limits=MappingProxyType(limits),
    )


def _pool_limit(reader: Reader, redis: RedisSettings, worker: WorkerSettings) -> None:
    """A `max_connections` in the URL that the worker can outgrow: redis-py refuses the calls
    beyond it at once, which would look like Redis being down."""
    values = parse_qs(urlsplit(redis.url).query).get("max_connections")
    if not values or not values[-1].isdigit():  # not a number: the URL's own check says so
        return
    needed = worker.concurrency + WORKER_OWN_CALLS
    if int(values[-1]) < needed:
        reader.problem(
            "redis.url",
            f"max_connections={values[-1]} is below what this worker may use at once: one "
            f"connection per running job (worker.concurrency = {worker.concurrency}) and "
            f"{WORKER_OWN_CALLS} for its own calls; raise it to {needed} or more, or remove it "
            "(the pool then grows as needed)",
        )


def _secrets_from_environment(reader: Reader, document: dict[str, Any]) -> None:
    """A signing or encryption key written into the file would be shown by every copy of it:
    refuse it."""
    table = document.get("worker")
    raw = table.get("signing_key") if isinstance(table, dict) else None
    if isinstance(raw, str) and raw and not check.has_reference(raw):
        reader.problem(
            "worker.signing_key",
            'must be read from the environment, like signing_key = "${JOBD_SIGNING_KEY}" '
            "(the value written in the file is not shown)",
        )
    keys = table.get("encryption_keys") if isinstance(table, dict) else None
    for index, item in enumerate(keys if isinstance(keys, list) else ()):
        if isinstance(item, str) and item and not check.has_reference(item):
            reader.problem(
                f"worker.encryption_keys[{index}]",
                "must be read from the environment, like encryption_keys = "
                '["${JOBD_ENCRYPTION_KEY}"] (the value written in the file is not shown)',
            )


def _section(
    reader: Reader, cls: type[SectionType], document: dict[str, Any], key: str
) -> SectionType:
    """One top-level table; with problems it falls back to defaults (the problems are raised)."""
    table = reader.table(document.get(key, {}), key)
    values, _ = _read_fields(reader, cls, table or {}, key, {})
    return cls(**values)


def _http(reader: Reader, document: dict[str, Any]) -> HttpSettings:
    http = _section(reader, HttpSettings, document, "http")
    table = document.get("http")
    raw = table.get("listen") if isinstance(table, dict) else None
    parsed = check.parse_listen(http.listen, shown_value(http.listen, raw))
    if isinstance(parsed, str):
        reader.problem("http.listen", parsed)
        return http
    host, port = parsed
    return dataclasses.replace(http, host=host, port=port)


def _functions(
    reader: Reader, document: dict[str, Any], worker: WorkerSettings, defaults: DefaultsSettings
) -> dict[str, FunctionSettings]:
    table = reader.table(document.get("functions", {}), "functions")
    inherited = {
        "queue": worker.queues[0] if worker.queues else "default",
        "timeout": defaults.timeout,
        "max_tries": defaults.max_tries,
        "keep_result": defaults.keep_result,
        "retry": defaults.retry,
    }
    functions: dict[str, FunctionSettings] = {}
    for name, raw in (table or {}).items():
        path = join_path("functions", name)
        if not check.NAME_PATTERN.fullmatch(name):
            reader.problem(path, f"function name {check.NAME_RULE}")
        function_table = reader.table(raw, path)
        if function_table is None:
            continue
        values, complete = _read_fields(reader, FunctionSettings, function_table, path, inherited)
        if complete:
            functions[name] = FunctionSettings(name=name, **values)
    return functions


def _limits(reader: Reader, document: dict[str, Any]) -> tuple[dict[str, LimitSettings], list[str]]:
    """The good [limits] tables, and the names of all of them."""
    table = reader.table(document.get("limits", {}), "limits") or {}
    limits: dict[str, LimitSettings] = {}
    for name, raw in table.items():
        path = join_path("limits", name)
        if not check.NAME_PATTERN.fullmatch(name) or ":" in name:
            # ':' separates a limit's name from the rest of its keys (see jobd.redis.keys)
            reader.problem(path, f"limit name {check.NAME_RULE}, except ':'")
            continue
        limit_table = reader.table(raw, path)
        if limit_table is None:
            continue
        values, complete = _read_fields(reader, LimitSettings, limit_table, path, {})
        if complete:
            limit = LimitSettings(name=name, **values)
            if limit_rules.check_limit(reader, limit):
                limits[name] = limit
    return limits, list(table)


def _cron(reader: Reader, document: dict[str, Any]) -> tuple[CronSettings, ...]:
    raw = document.get("cron", [])
    if not isinstance(raw, list):
        reader.problem("cron", f"expected array of tables ([[cron]]), got {check.describe(raw)}")
        return ()
    functions = document.get("functions")
    function_names = list(functions) if isinstance(functions, dict) else []
    entries: list[CronSettings] = []
    first_index: dict[str, int] = {}
    for index, raw_entry in enumerate(raw):
        path = f"cron[{index}]"
        table = reader.table(raw_entry, path)
        if table is None:
            continue
        values, complete = _read_fields(reader, CronSettings, table, path, {})
        function = values.get("function")
        if function is not None and function not in function_names:
            close = check.closest(function, function_names)
            hint = f"; did you mean {close!r}?" if close else ""
            shown = shown_value(function, table["function"])
            reader.problem(
                f"{path}.function", f"unknown function {shown}, not in [functions]{hint}"
            )
            complete = False
        name = values.get("name")
        if name is not None and name in first_index:
            shown = shown_value(name, table["name"])
            reader.problem(
                f"{path}.name", f"duplicate cron name {shown} (also cron[{first_index[name]}])"
            )
            complete = False
        elif name is not None:
            first_index[name] = index
        if complete:
            entries.append(CronSettings(**values))
    return tuple(entries)


def _read_fields(
    reader: Reader,
    cls: type[Any],
    table: dict[str, Any],
    path: str,
    inherited: Mapping[str, Any],
) -> tuple[dict[str, Any], bool]:
    """Convert and check each key of `table` as a field of `cls`.

    Returns the good values (absent keys take `inherited` values, else the dataclass default) and
    whether every field was good.
    """
    keys = [field.name for field in dataclasses.fields(cls) if not _derived(field)]
    reader.check_keys(table, keys, path, _SECTION_KEYS)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    complete = True
    for field in dataclasses.fields(cls):
        if _derived(field):
            continue
        if field.name not in table:
            if field.name in inherited:
                values[field.name] = inherited[field.name]
            elif (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                reader.problem(path, f"missing required key {field.name!r}")
                complete = False
            continue
        raw = table[field.name]
        field_path = join_path(path, field.name)
        special = _CONVERTERS.get((cls, field.name))
        if special is not None:
            value = special(reader, raw, field_path)
        else:
            value = _convert(reader, hints[field.name], raw, field_path, inherited.get(field.name))
        rule = _RULES.get((cls, field.name))
        problem = rule(value, shown_value(value, raw)) if rule and value is not None else None
        if problem:
            reader.problem(field_path, problem)
        if value is None or problem:
            complete = False
            continue
        values[field.name] = value
    return values, complete


_CONVERTERS: dict[tuple[type, str], Callable[[Reader, object, str], Any]] = {
    (WorkerSettings, "encryption_keys"): check.encryption_keys,
    (FunctionSettings, "limits"): limit_rules.read_names,
    (LimitSettings, "rate"): limit_rules.read_rate,
    (LimitSettings, "cost"): limit_rules.read_rate,
    (LimitSettings, "concurrency"): lambda reader, raw, path: reader.integer(raw, path),
}
"""Fields whose type alone does not say how to read them."""


def _convert(reader: Reader, hint: Any, raw: object, path: str, inherited: Any) -> Any:
    """One value by its annotation; None after a problem."""
    if hint is bool:
        return reader.boolean(raw, path)
    if hint is int:
        return reader.integer(raw, path)
    if hint is float:
        return reader.duration(raw, path)
    if hint is str or hint == str | None:
        return reader.string(raw, path)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return reader.choice(hint, raw, path)
    if hint == tuple[str, ...]:
        return reader.queue_list(raw, path)
    if hint == tuple[Any, ...]:
        if not isinstance(raw, list):
            reader.problem(path, f"expected array, got {check.describe(raw)}")
            return None
        items = reader.json_value(raw, path)
        return None if items is None else tuple(items)
    if hint == Mapping[str, Any]:
        mapping = reader.json_value(raw, path) if reader.table(raw, path) is not None else None
        return None if mapping is None else MappingProxyType(mapping)
    if hint is RetrySettings:
        return _retry(reader, raw, path, inherited or RetrySettings())
    raise TypeError(f"jobd.config cannot read a {hint!r} at {path}")  # pragma: no cover


def _retry(reader: Reader, raw: object, path: str, base: RetrySettings) -> RetrySettings | None:
    """A retry table: its keys override single keys of `base` (defaults.retry, for a function)."""
    table = reader.table(raw, path)
    if table is None:
        return None
    inherited = {field.name: getattr(base, field.name) for field in dataclasses.fields(base)}
    values, complete = _read_fields(reader, RetrySettings, table, path, inherited)
    if not complete:
        return None
    retry = RetrySettings(**values)
    if retry.max < retry.base:
        reader.problem(join_path(path, "max"), "must not be shorter than base")
        return None
    return retry


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved annotations of a settings dataclass."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _derived(field: dataclasses.Field[Any]) -> bool:
    return bool(field.metadata.get("derived"))


# "concurrency" -> "worker.concurrency": the hint for a key put in the wrong table.
_SECTION_KEYS = {
    field.name: f"{section}.{field.name}"
    for section in ("redis", "worker", "http", "defaults", "hooks", "events", "tracing")
    for field in dataclasses.fields(getattr(Settings(), section))
    if not _derived(field)
}


def warnings_for(settings: Settings) -> list[str]:
    """Notes that are not errors: queues this worker does not consume, a drain over 25 minutes …"""
    label = str(settings.source) if settings.source is not None else STRING_SOURCE
    consumed = settings.worker.queues
    notes: list[str] = []
    if not settings.functions:
        notes.append(f"{label}: functions: no job functions defined; a worker can run no job")
    for name, function in settings.functions.items():
        if function.queue not in consumed:
            notes.append(
                f"{label}: {join_path('functions', name)}.queue: queue {function.queue!r} is not "
                f"in worker.queues; this worker will not run {name!r} jobs, another worker must"
            )
    for index, entry in enumerate(settings.cron):
        if entry.queue is not None and entry.queue not in consumed:
            notes.append(
                f"{label}: cron[{index}].queue: queue {entry.queue!r} is not in worker.queues; "
                "another worker must consume it"
            )
    if settings.redis.embedded:
        notes.append(
            f'{label}: redis.url: "embedded" is for development: jobd runs a private Redis with '
            f"its data in {settings.redis_data_dir()}; in production, point redis.url at a "
            "managed Redis server"
        )
    if (
        topology_kind(settings.redis.url) == "sentinel"
        and settings.redis.enqueue_durability is Durability.PRIMARY
    ):
        notes.append(
            f'{label}: redis.enqueue_durability: "primary" with Sentinel: during a failover the '
            "old primary keeps acknowledging enqueues until it is demoted, then drops them "
            '(jobd\'s failover test lost 3,490 of 3,747); "replica" makes producers that read this '
            "file wait for a replica"
        )
    for name in limit_rules.unused(settings.functions, settings.limits):
        notes.append(
            f"{label}: {join_path('limits', name)}: no function names this limit in its "
            "`limits`, so it holds back no job"
        )
    if settings.worker.drain_timeout > LONG_DRAIN_TIMEOUT:
        notes.append(
            f"{label}: worker.drain_timeout: {format_duration(settings.worker.drain_timeout)} is "
            "longer than 25m; systemd's TimeoutStopSec and Kubernetes' "
            "terminationGracePeriodSeconds must be longer still, or the drain is killed"
        )
    return notes


def dump(settings: Settings) -> str:
    """The effective settings as TOML (durations as "30s"), the Redis password redacted and the
    signing and encryption keys left out."""
    import tomli_w  # here: a producer reading the file (Client.from_config) never writes TOML

    document: dict[str, Any] = {
        field.name: _plain_table(getattr(settings, field.name))
        for field in dataclasses.fields(Settings)
        if field.name not in ("source", "functions", "cron", "limits")
    }
    document["redis"]["url"] = _plain(settings.redis.redacted_url())
    document["worker"].pop("signing_key", None)  # secrets: never written out
    document["worker"].pop("encryption_keys", None)
    if settings.functions:
        document["functions"] = {
            name: _plain_table(function) for name, function in settings.functions.items()
        }
    if settings.cron:
        document["cron"] = [_plain_table(entry) for entry in settings.cron]
    if settings.limits:
        document["limits"] = {name: _plain_table(limit) for name, limit in settings.limits.items()}
    return tomli_w.dumps(document)


def _plain_table(instance: Any) -> dict[str, Any]:
    hints = _hints(type(instance))
    table: dict[str, Any] = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if _derived(field) or value is None:
            continue
        if hints[field.name] is float:
            table[field.name] = format_duration(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, Rate):
            table[field.name] = _plain_table(value)
        else:
            table[field.name] = _plain(value)
    return table


def _plain(value: Any) -> Any:
    """TOML-writable copy: enums as their value, tuples as lists, mappings as dicts, and a literal
    `${` written `$${` so that loading the output again does not expand it."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Rate):
        return str(value)
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
