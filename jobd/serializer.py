"""JSON, the default and only built-in serializer: strict on the way in, size-limited both ways.

Pickle is never used: anyone who can write to Redis would get code execution in every worker.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from jobd.errors import PayloadError, PayloadTooLarge, SerializationError

DEFAULT_MAX_BYTES = 1_048_576


class Serializer(Protocol):
    """What a serializer must offer (JSON is the one built in)."""

    def dumps(self, value: Any, *, what: str) -> bytes: ...

    def loads(self, data: bytes, *, what: str) -> Any: ...


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Python's json keeps the last value silently; that changes meaning, so refuse.
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def find_unserializable(value: Any, path: str) -> str | None:
    """Return 'path (type)' of the first value JSON cannot carry, for an error message."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} (float {value!r})"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_unserializable(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} (dict key {key!r} of type {type(key).__name__})"
            found = find_unserializable(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    return f"{path} (type {type(value).__name__})"


class JsonSerializer:
    """Compact UTF-8 JSON; refuses NaN/Infinity, duplicate keys, and data above `max_bytes`."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=True
        )
        self._decoder = json.JSONDecoder(
            object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )

    def dumps(self, value: Any, *, what: str) -> bytes:
        try:
            data = self._encoder.encode(value).encode()
        except (TypeError, ValueError) as error:
            culprit = find_unserializable(value, what) or what
            raise SerializationError(
                f"{culprit} cannot be encoded as JSON: {error}; pass only str, int, float, bool, "
                "None, lists and dicts with string keys"
            ) from None
        except RecursionError:
            raise SerializationError(f"{what} is nested too deeply to encode") from None
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes encoded, above the limit of {self.max_bytes} bytes"
            )
        return data

    def loads(self, data: bytes, *, what: str) -> Any:
        if len(data) > self.max_bytes:
            raise PayloadError(f"{what} is {len(data)} bytes, limit {self.max_bytes}")
        try:
            return self._decoder.decode(data.decode())
        except UnicodeDecodeError as error:
            raise PayloadError(f"{what} is not valid UTF-8: {error.reason}") from None
        except RecursionError:
            raise PayloadError(f"{what} is nested too deeply") from None
        except ValueError as error:
            raise PayloadError(f"{what} is not valid JSON: {error}") from None
