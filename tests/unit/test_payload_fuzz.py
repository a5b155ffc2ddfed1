"""Payload fuzzing (docs/reliability.md §5.4): whatever bytes sit in a job's payload, decoding gives the
call's arguments or exactly one PayloadError, never another exception. Fixed seed."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobd.errors import PayloadError
from jobd.model import decode_payload, encode_payload
from jobd.serializer import JsonSerializer, nesting_exceeds

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
SERIALIZER = JsonSerializer(max_bytes=200_000)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
TOKENS = st.sampled_from(
    [
        "{", "}", "[", "]", ",", ":", '"', "\\", '"v"', '"args"', '"kwargs"', "1", "-", "0.5e",
        "1e400", "NaN", "Infinity", "-Infinity", "true", "null", " ", "\n", '"\\ud800"',
        "9" * 4400, "[" * 70, "]" * 70, '"a":1,"a":2', "\x00", "é", "\udcff",
    ]
)  # fmt: skip


def decodes_or_refuses(data: bytes) -> None:
    try:
        args, kwargs = decode_payload(SERIALIZER, data)
    except PayloadError as error:
        assert str(error).startswith("payload "), error
        return
    assert isinstance(args, tuple) and isinstance(kwargs, dict)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.lists(TOKENS, max_size=30).map("".join))
def test_json_like_text(text: str) -> None:
    decodes_or_refuses(text.encode(errors="surrogatepass"))


@FUZZ
@given(VALUES, VALUES)
def test_any_json_document_in_the_envelope(args: Any, kwargs: Any) -> None:
    envelope = {"v": 1, "args": args, "kwargs": kwargs}
    decodes_or_refuses(json.dumps(envelope).encode())


@FUZZ
@given(st.lists(VALUES, max_size=4), st.dictionaries(st.text(max_size=8), VALUES, max_size=4))
def test_what_a_producer_encodes_decodes_to_the_same_call(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    data = encode_payload(SERIALIZER, tuple(args), kwargs)
    assert decode_payload(SERIALIZER, data) == (tuple(args), kwargs)


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000), st.binary(max_size=8))
def test_corrupted_envelopes(junk: bytes, position: int, insert: bytes) -> None:
    data = encode_payload(SERIALIZER, (junk.decode(errors="replace"), [1, {"x": 2.5}]), {"k": None})
    cut = position % len(data)
    decodes_or_refuses(data[:cut] + insert + data[cut + len(insert) :])


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


@FUZZ
@given(VALUES, st.integers(1, 6))
def test_the_nesting_check_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    text = json.dumps(value).encode()
    assert nesting_exceeds(text, limit) == (depth(value) > limit)


def test_floats_that_json_reads_as_infinite_are_refused() -> None:
    for text in (b"1e400", b"-1e400", b"1" * 400 + b".0"):
        data = b'{"v":1,"args":[' + text + b"]}"
        try:
            args, _ = decode_payload(SERIALIZER, data)
        except PayloadError as error:
            assert "out of range" in str(error)
        else:
            assert all(math.isfinite(arg) for arg in args)
