"""Reading single TOML values for `jobd.config`: `${NAME}` expansion, types, durations, and rules
for names, import paths, URLs, time zones and cron expressions. Every problem goes to a `Reader`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from jobd import crypto
from jobd.config.durations import ACCEPTED_FORMAT, format_duration, parse_duration
from jobd.config.settings import EMBEDDED_URL
from jobd.redis.connect import parse_topology, topology_kind

EnumType = TypeVar("EnumType", bound=StrEnum)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
NAME_RULE = "may only contain letters, digits and _ . : - (1 to 100 characters)"
MAX_JSON_DEPTH = 32

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,19}")  # TOML integers are 64-bit
_LISTEN = re.compile(r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d{1,5})")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CRON_FORMAT = (
    'expected 5 fields "minute hour day month weekday", a 6th for seconds, a 7th for the year'
)


def join_path(path: str, key: str) -> str:
    """`path.key`, quoting the key as TOML does when it is not a bare key."""
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    return f"{path}.{shown}" if path else shown


def closest(word: str, choices: Collection[str]) -> str | None:
    """The choice a misspelt `word` most likely meant, for "did you mean" hints; None if none is
    close. difflib is loaded here, by the first mistake: a valid file never needs it."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def has_reference(raw: object) -> bool:
    """Whether `raw` is a string that reads the environment (its expansion is never shown)."""
    return isinstance(raw, str) and "${" in raw


def describe(raw: object) -> str:
    """How a message shows a TOML value: its type and, for scalars, the value as written."""
    if isinstance(raw, str):
        shown = _quoted(raw)
        return (
            f"string {shown} (expanded value not shown)"
            if has_reference(raw)
            else f"string {shown}"
        )
    if isinstance(raw, bool):
        return f"boolean {'true' if raw else 'false'}"
    if isinstance(raw, int):
        return f"integer {raw}"
    if isinstance(raw, float):
        return f"float {raw!r}"
    if isinstance(raw, datetime.datetime):
        return "datetime"
    if isinstance(raw, datetime.date):
        return "date"
    if isinstance(raw, datetime.time):
        return "time"
    if isinstance(raw, list):
        return "array"
    if isinstance(raw, dict):
        return "table"
    return type(raw).__name__


def shown_value(value: object, raw: object) -> str:
    """A converted value as messages show it: durations as "30s"; hidden if from the environment."""
    if has_reference(raw):
        return describe(raw)
    if isinstance(value, float):
        return format_duration(value)
    if isinstance(value, str):
        return _quoted(value)
    return repr(value)


def _quoted(text: str) -> str:
    """`text` quoted, cut to 80 characters: a message stays one readable line."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


@dataclass(slots=True)
class Reader:
    """Converts raw TOML values at key paths; collects problems as `"<file>: <path>: <problem>"`."""

    file: str
    environ: Mapping[str, str]
    problems: list[str]

    def problem(self, path: str, message: str) -> None:
        """Record one problem at `path`."""
        self.problems.append(f"{self.file}: {path}: {message}")

    def check_keys(
        self,
        table: Mapping[str, Any],
        allowed: Collection[str],
        path: str,
        elsewhere: Mapping[str, str] | None = None,
    ) -> None:
        """Report each key of `table` not in `allowed`, with a "did you mean" when one is close.

        `elsewhere` maps keys of other tables to their full path, for a key put in the wrong table.
        """
        for key in table:
            if key in allowed:
                continue
            close = closest(key, allowed)
            if close:
                hint = f"did you mean {close!r}?"
            elif elsewhere and key in elsewhere:
                hint = f"did you mean {elsewhere[key]!r}? (it belongs in another table)"
            else:
                hint = "expected one of " + ", ".join(allowed)
            self.problem(join_path(path, key), f"unknown key; {hint}")

    def table(self, raw: object, path: str) -> dict[str, Any] | None:
        """`raw` if it is a table, else None (and a problem)."""
        if isinstance(raw, dict):
            return raw
        self.problem(path, f"expected table, got {describe(raw)}")
        return None

    def expand(self, raw: str, path: str) -> str | None:
        """`raw` with `${NAME}` and `${NAME:-default}` replaced from the environment.

        The default applies when NAME is unset or empty, as in the shell; `$${` is a literal `${`.
        None when a reference fails.
        """
        if "${" not in raw:
            return raw
        failed = False

        def replace(match: re.Match[str]) -> str:
            nonlocal failed
            if match.group(0) == "$${":
                return "${"
            body = match["body"]
            name, separator, default = body.partition(":-")
            if not match["close"] or not _VARIABLE_NAME.fullmatch(name):
                reference = "${" + body + match["close"]
                self.problem(
                    path,
                    f"invalid environment reference {reference!r}; "
                    "expected ${NAME} or ${NAME:-default}",
                )
                failed = True
                return ""
            value = self.environ.get(name)
            if separator and not value:
                return default
            if value is None:
                self.problem(path, f"environment variable {name} is not set")
                failed = True
                return ""
            return value

        expanded = _REFERENCE.sub(replace, raw)
        return None if failed else expanded

    def string(self, raw: object, path: str) -> str | None:
        """A string value, expanded."""
        if not isinstance(raw, str):
            self.problem(path, f"expected string, got {describe(raw)}")
            return None
        return self.expand(raw, path)

    def integer(self, raw: object, path: str) -> int | None:
        """An integer; a string that reads the environment may expand to one ("${WORKERS:-10}")."""
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and has_reference(raw):
            text = self.expand(raw, path)
            if text is None:
                return None
            if _INTEGER_TEXT.fullmatch(text.strip()):
                return int(text)
        self.problem(path, f"expected integer, got {describe(raw)}")
        return None

    def boolean(self, raw: object, path: str) -> bool | None:
        """A boolean; a string that reads the environment may expand to "true" or "false"."""
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and has_reference(raw):
            text = self.expand(raw, path)
            if text is None:
                return None
            if text.strip().lower() in ("true", "false"):
                return text.strip().lower() == "true"
        self.problem(path, f"expected boolean, got {describe(raw)}")
        return None

    def duration(self, raw: object, path: str) -> float | None:
        """Seconds, from a number or a string such as "30s"."""
        if isinstance(raw, str):
            text = self.expand(raw, path)
            if text is None:
                return None
            try:
                return parse_duration(text)
            except ValueError as error:
                hidden = f"{ACCEPTED_FORMAT}, got {describe(raw)}"
                self.problem(path, hidden if has_reference(raw) else str(error))
                return None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            try:
                return parse_duration(raw)
            except ValueError as error:
                self.problem(path, str(error))
                return None
        self.problem(path, f"{ACCEPTED_FORMAT}, got {describe(raw)}")
        return None

    def choice(self, enum: type[EnumType], raw: object, path: str) -> EnumType | None:
        """One member of a `StrEnum`, by value."""
        text = self.expand(raw, path) if isinstance(raw, str) else None
        for member in enum:
            if text == member.value:
                return member
        if text is not None or not isinstance(raw, str):
            choices = ", ".join(repr(member.value) for member in enum)
            self.problem(path, f"expected one of {choices}, got {describe(raw)}")
        return None

    def string_list(self, raw: object, path: str) -> tuple[str, ...] | None:
        """An array of strings, each expanded."""
        if not isinstance(raw, list):
            self.problem(path, f"expected array of strings, got {describe(raw)}")
            return None
        items = [self.string(item, f"{path}[{index}]") for index, item in enumerate(raw)]
        strings = tuple(item for item in items if item is not None)
        return strings if len(strings) == len(items) else None

    def queue_list(self, raw: object, path: str) -> tuple[str, ...] | None:
        """A non-empty array of distinct queue names."""
        queues = self.string_list(raw, path)
        if queues is None or not isinstance(raw, list):
            return None
        if not queues:
            self.problem(path, "must list at least one queue")
            return None
        rule = name("queue name")
        good = True
        for index, queue in enumerate(queues):
            shown = shown_value(queue, raw[index])
            problem = rule(queue, shown)
            if problem is None and queue in queues[:index]:
                problem = f"duplicate queue {shown}"
            if problem:
                self.problem(f"{path}[{index}]", problem)
                good = False
        return queues if good else None

    def json_value(self, raw: object, path: str, depth: int = 0) -> Any:
        """A value a job can take: strings expanded, arrays and tables copied; None: a problem."""
        if depth > MAX_JSON_DEPTH:
            self.problem(path, f"nested deeper than {MAX_JSON_DEPTH} levels")
            return None
        if isinstance(raw, str):
            return self.expand(raw, path)
        if isinstance(raw, bool | int) or (isinstance(raw, float) and math.isfinite(raw)):
            return raw
        if isinstance(raw, list):
            items = [
                self.json_value(item, f"{path}[{index}]", depth + 1)
                for index, item in enumerate(raw)
            ]
            return None if any(item is None for item in items) else items
        if isinstance(raw, dict):
            values = {
                key: self.json_value(item, join_path(path, key), depth + 1)
                for key, item in raw.items()
            }
            return None if any(item is None for item in values.values()) else values
        self.problem(
            path,
            f"expected a JSON value (string, integer, finite float, boolean, array or table), "
            f"got {describe(raw)}",
        )
        return None


# Rules: a converted value and how messages show it -> a problem, or None when the value is fine.
Rule = Callable[[Any, str], "str | None"]


def at_least(minimum: int) -> Rule:
    """An integer no smaller than `minimum`."""
    return lambda value, shown: (
        None if value >= minimum else f"must be at least {minimum}, got {shown}"
    )


def between(minimum: int, maximum: int) -> Rule:
    """An integer from `minimum` to `maximum`."""
    return lambda value, shown: (
        None
        if minimum <= value <= maximum
        else f"must be between {minimum} and {maximum}, got {shown}"
    )


def positive(value: float, shown: str) -> str | None:
    """A duration longer than zero."""
    return None if value > 0 else f"must be longer than 0s, got {shown}"


def lease_timeout(value: float, shown: str) -> str | None:
    """Leases are renewed every lease_timeout / 3; renewals under 100ms apart cannot keep up."""
    if value >= 0.3:
        return None
    return (
        f"must be at least 300ms, got {shown}: the lease is renewed every lease_timeout / 3, "
        "and renewals less than 100ms apart cannot keep up"
    )


def byte_limit(value: int, shown: str) -> str | None:
    """A payload size limit Redis can honour (a Redis string holds at most 512 MiB)."""
    if 1 <= value <= 512 * 1024 * 1024:
        return None
    return f"must be between 1 and 536870912 (512 MiB, the largest Redis value), got {shown}"


def name(what: str) -> Rule:
    """A queue name, function name, key prefix or cron name: safe inside a Redis key."""
    return lambda value, shown: (
        None if NAME_PATTERN.fullmatch(value) else f"{what} {NAME_RULE}, got {shown}"
    )


def optional_name(what: str) -> Rule:
    """Like `name`, but None (key absent) is fine."""
    rule = name(what)
    return lambda value, shown: None if value is None else rule(value, shown)


def import_path(value: str | None, shown: str) -> str | None:
    """`package.module:attribute.attribute`; None (key absent) is fine. `jobd.worker.functions` imports."""
    if value is None or is_import_path(value):
        return None
    return f'expected "module:attribute" like "myapp.jobs:send_email", got {shown}'


def is_import_path(value: str) -> bool:
    """Whether `value` has the form dotted.module:dotted.attribute."""
    module, separator, attribute = value.partition(":")
    return bool(separator) and all(
        part.isidentifier() for part in [*module.split("."), *attribute.split(".")]
    )


def redis_url(value: str, shown: str) -> str | None:
    """A URL redis-py can use, or "embedded". Messages never show the URL (it may hold a password)."""
    if value == EMBEDDED_URL:
        return None
    if topology_kind(value) is not None:
        try:
            topology = parse_topology(value)
        except ValueError as error:
            return str(error)
        tls = "rediss" if topology.options.get("ssl") else "redis"
        return _tls_files(tls, parse_qs(urlsplit(value).query))
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        return f"not a valid URL ({error})"
    if parts.scheme not in _REDIS_SCHEMES:
        return (
            "scheme must be redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://,"
            f" got {parts.scheme + '://'!r}"
        )
    if parts.scheme == "unix":
        return (
            None
            if parts.path
            else "a unix:// URL needs the socket path, like unix:///run/redis.sock"
        )
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        return f"the database after the host must be a number, like /0, got {('/' + database)!r}"
    return _tls_files(parts.scheme, parse_qs(parts.query))


TLS_FILE_PARAMETERS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
"""Query parameters of a rediss:// URL naming files: the CA, the client certificate and its key."""


def _tls_files(scheme: str, query: Mapping[str, list[str]]) -> str | None:
    """The TLS files a URL names exist (checked now, not at the first connection attempt)."""
    named = [key for key in TLS_FILE_PARAMETERS if key in query]
    if named and scheme != "rediss":
        return f"{named[0]}= takes effect only with TLS: use a rediss:// URL"
    for key in named:
        path = query[key][-1]
        if not os.path.isfile(path):
            return f"{key}= names {path!r}, which is not a file"
        if not os.access(path, os.R_OK):
            return f"{key}= names {path!r}, which this user cannot read"
    return None


def directory(value: str, shown: str) -> str | None:
    """A directory path: not empty."""
    return None if value.strip() else f"expected a directory path, got {shown}"


MIN_SIGNING_KEY_LENGTH = 32


def signing_key(value: str, shown: str) -> str | None:
    """An HMAC key long enough to resist guessing ("" turns signing off). Never shows the key."""
    if not value or len(value) >= MIN_SIGNING_KEY_LENGTH:
        return None
    return (
        f"is {len(value)} characters long, use at least {MIN_SIGNING_KEY_LENGTH} "
        "(e.g. the output of `openssl rand -hex 32`)"
    )


def encryption_keys(reader: Reader, raw: object, path: str) -> tuple[str, ...] | None:
    """An array of keys read from the environment, each 32 bytes as URL-safe base64; entries that
    expand to "" are skipped. Problems name the entry's position, never its value; an entry
    written literally is reported by the loader (secrets come from the environment only)."""
    if not isinstance(raw, list):
        reader.problem(
            path,
            'expected an array of keys read from the environment, like ["${JOBD_ENCRYPTION_KEY}"]'
            f", got {describe(raw)}",
        )
        return None
    keys: list[str] = []
    good = True
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, str):
            reader.problem(where, f"expected string, got {describe(item)}")
            good = False
            continue
        if item and not has_reference(item):
            good = False  # written into the file: the loader says so
            continue
        value = reader.expand(item, where)
        if value is None:
            good = False
            continue
        if not value.strip():
            continue
        try:
            crypto.parse_key(value)
        except ValueError:
            reader.problem(where, f"{crypto.KEY_RULE}; the value is not shown")
            good = False
            continue
        keys.append(value.strip())
    if good and keys:
        missing = crypto.cryptography_missing()
        if missing is not None:
            reader.problem(path, missing)
            good = False
    return tuple(keys) if good else None


def time_zone(value: str, shown: str) -> str | None:
    """An IANA time zone name that zoneinfo knows."""
    import zoneinfo  # here: only files with [[cron]] entries name time zones

    try:
        zoneinfo.ZoneInfo(value)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, OSError: all "unknown"
        return f"unknown time zone {shown}"
    return None


def cron_schedule(value: str, shown: str) -> str | None:
    """A croniter expression that can fire: strict, so "0 0 31 2 *" (never fires) is refused."""
    from croniter import croniter  # here: a producer reading the file (from_config) needs none

    try:
        if croniter.is_valid(value, strict=True):
            return None
        croniter.expand(value, strict=True)
        reason = ""  # pragma: no cover - is_valid is False exactly when expand raises
    except Exception as error:  # noqa: BLE001 - croniter raises many types on odd input
        reason = _cron_reason(str(error), value)
    detail = f" ({reason})" if reason else ""
    return f"invalid cron expression {shown}{detail}; {_CRON_FORMAT}"


def _cron_reason(message: str, value: str) -> str:
    """croniter's reason without the expression it repeats (which may come from the environment)."""
    if "hash_id" in message:
        return "hashed H fields are not supported"
    prefix = f"[{value}] is not acceptable"
    if message.startswith(prefix):
        message = message[len(prefix) :].lstrip(",. ")
    return message.rstrip(".")


def parse_listen(value: str, shown: str) -> tuple[str, int] | str:
    """(host, port) from "host:port" or "[ipv6]:port", or the problem as a string."""
    match = _LISTEN.fullmatch(value)
    if match is None:
        return f'expected "host:port" like "127.0.0.1:9100" or "[::1]:9100", got {shown}'
    port = int(match["port"])
    if port > 65535:
        return f"port must be between 0 and 65535, got {shown}"
    host = match["host"]
    if host is None:
        try:
            host = str(ipaddress.IPv6Address(match["ipv6"]))
        except ValueError:
            return f"expected an IPv6 address inside the brackets, got {shown}"
    return host, port
