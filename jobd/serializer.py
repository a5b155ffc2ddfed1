"""JSON, the default and only built-in serializer: strict on the way in, size- and depth-limited both
ways.

Pickle is never used: anyone who can write to Redis would get code execution in every worker.
Decoding refuses what Python's `json` would otherwise accept silently or fail on with an odd error
(docs/reliability.md, finding 11): duplicate keys (last-wins changes meaning), NaN and Infinity, numbers
out of float range, integers longer than Python converts (4300 digits), and nesting deeper than
`max_depth` (checked on the raw text before parsing, so a 10,000-deep list is refused in
microseconds instead of raising RecursionError half-way). Every refusal is one `PayloadError`.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Protocol

from jobd.errors import PayloadError, PayloadTooLarge, SerializationError

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are refused; far below CPython's recursion limit."""
MAX_DEPTH_LIMIT = 500
"""The largest `max_depth` accepted: deeper nesting would reach CPython's recursion limit."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
"""A JSON string (an unterminated one runs to the end): possessive, so scanning stays linear."""
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OBJECT_AS_ARRAY = bytes.maketrans(b"{}", b"[]")


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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # json turns 1e400 into inf, which no JSON encoder can write back
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text `data` nests arrays and objects more than `limit` deep, judged without
    parsing: strings are cut out, the brackets left over are peeled one level per round.

    Unbalanced brackets (invalid JSON) answer False: the decoder then says what is wrong."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case, at C speed
    brackets = _STRING.sub(b"", data).translate(_OBJECT_AS_ARRAY, _NOT_BRACKET)
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"")
        if not peeled or len(peeled) == len(brackets):
            return False
        brackets = peeled
    return True


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
    """Compact UTF-8 JSON; refuses NaN/Infinity, duplicate keys, data above `max_bytes` and nesting
    deeper than `max_depth` (see the module docstring)."""

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self.max_bytes = max_bytes
        self.max_depth = min(max_depth, MAX_DEPTH_LIMIT)
        self._encoder = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=True
        )
        self._decoder = json.JSONDecoder(
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )

    def _too_deep(self, what: str) -> str:
        return (
            f"{what} is nested too deeply (more than {self.max_depth} levels of arrays and objects)"
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
            raise SerializationError(self._too_deep(what)) from None
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{what} is {len(data)} bytes encoded, above the limit of {self.max_bytes} bytes"
            )
        if nesting_exceeds(data, self.max_depth):
            raise SerializationError(self._too_deep(what))
        return data

    def loads(self, data: bytes, *, what: str) -> Any:
        """Decode `data`; one PayloadError says what is wrong. The cheap checks (size, nesting) run
        before parsing."""
        if len(data) > self.max_bytes:
            raise PayloadError(f"{what} is {len(data)} bytes, limit {self.max_bytes}")
        if nesting_exceeds(data, self.max_depth):
            raise PayloadError(self._too_deep(what))
        try:
            return self._decoder.decode(data.decode())
        except UnicodeDecodeError as error:
            raise PayloadError(f"{what} is not valid UTF-8: {error.reason}") from None
        except RecursionError:
            raise PayloadError(self._too_deep(what)) from None
        except ValueError as error:
            if "integer string conversion" in str(error):
                digits = sys.get_int_max_str_digits()
                raise PayloadError(
                    f"{what} holds an integer of more than {digits} digits"
                ) from None
            raise PayloadError(f"{what} is not valid JSON: {error}") from None
