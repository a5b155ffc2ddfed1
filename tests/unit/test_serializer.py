"""The JSON serializer: strict decoding, clear errors that name the culprit, size limits."""

from __future__ import annotations

from datetime import datetime

import pytest

from jobd.errors import PayloadError, PayloadTooLarge, SerializationError
from jobd.model import decode_payload, encode_payload
from jobd.serializer import JsonSerializer


def test_round_trip() -> None:
    serializer = JsonSerializer()
    data = encode_payload(serializer, (1, "é", [True, None]), {"x": {"y": 2.5}})
    assert decode_payload(serializer, data) == ((1, "é", [True, None]), {"x": {"y": 2.5}})


@pytest.mark.parametrize(
    ("value", "culprit"),
    [
        ((datetime(2026, 1, 1),), "args[0] (type datetime)"),
        (({"a": {1, 2}},), "args[0]['a'] (type set)"),
        ((b"bytes",), "args[0] (type bytes)"),
        ((float("nan"),), "args[0] (float nan)"),
        (({"a": [1, {"b": object()}]},), "args[0]['a'][1]['b'] (type object)"),
    ],
)
def test_unencodable_arguments_name_the_path(value: tuple[object, ...], culprit: str) -> None:
    with pytest.raises(SerializationError) as error:
        encode_payload(JsonSerializer(), value, {})
    assert str(error.value).startswith(f"{culprit} cannot be encoded as JSON")
    assert isinstance(error.value, TypeError)


def test_unencodable_keyword_argument_is_named() -> None:
    with pytest.raises(SerializationError, match=r"^kwargs\['when'\] \(type datetime\)"):
        encode_payload(JsonSerializer(), (), {"when": datetime(2026, 1, 1)})


def test_size_limit_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(
        PayloadTooLarge, match=r"arguments is \d+ bytes encoded, above the limit of 100"
    ):
        encode_payload(JsonSerializer(max_bytes=100), ("x" * 200,), {})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "not valid UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_strict_decoding(data: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        JsonSerializer(max_bytes=1_000_000).loads(data, what="payload")


def test_oversized_data_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadError, match="payload is 11 bytes, limit 10"):
        JsonSerializer(max_bytes=10).loads(b'"123456789"', what="payload")
