"""The event vocabulary without Redis: ids that compare in stream order, the names a job may emit,
progress reports, and the Server-Sent Events form of an event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobd.client.events import KEEPALIVE, sse_message
from jobd.errors import InvalidJobOption
from jobd.events import (
    JobEvent,
    Progress,
    check_event_name,
    check_progress,
    event_id,
    event_number,
    progress_of,
)


@given(st.integers(1, 10**12 - 1), st.integers(1, 10**12 - 1))
def test_ids_compare_as_strings_in_stream_order(a: int, b: int) -> None:
    assert (event_id(a) < event_id(b)) == (a < b)
    assert event_number(event_id(a)) == a


def test_event_numbers_accept_the_forms_readers_meet() -> None:
    assert event_number(None) == 0 and event_number("") == 0
    assert event_number("000000000042") == 42
    assert event_number("42") == 42 and event_number("0-42") == 42
    for bad in ("abc", "1-2", "-3", "4.5", "0-", "1" * 19):
        with pytest.raises(InvalidJobOption, match="is not an event id"):
            event_number(bad, "last_event_id")


def test_names_a_job_may_emit() -> None:
    assert check_event_name("token") == "token"
    assert check_event_name("step.done:2-a_b") == "step.done:2-a_b"
    for reserved in (
        "started",
        "retrying",
        "succeeded",
        "failed",
        "aborted",
        "progress",
        "dropped",
    ):
        with pytest.raises(ValueError, match="reserved"):
            check_event_name(reserved)
    for bad in ("", "two words", "x" * 65, "new\nline", 7):
        with pytest.raises(ValueError, match="not valid"):
            check_event_name(bad)


def test_progress_reports() -> None:
    assert check_progress(0, None) == (0.0, None)
    assert check_progress(1, "done") == (1.0, "done")
    fraction, message = check_progress(0.5, "m" * 2000)
    assert fraction == 0.5 and message is not None and len(message) < 1100
    for bad in (-0.1, 1.01, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="fraction"):
            check_progress(bad, None)
    with pytest.raises(ValueError, match="message"):
        check_progress(0.5, 3)
    assert progress_of({"fraction": 0.25, "message": "a"}) == Progress(0.25, "a")
    assert progress_of({"fraction": "x"}) is None and progress_of(None) is None


def test_an_event_as_server_sent_events() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = JobEvent(event_id(3), "token", {"text": "a\nb", "é": 1}, at)
    assert sse_message(event) == (
        'id: 000000000003\nevent: token\ndata: {"text":"a\\nb","é":1}\n\n'.encode()
    )
    assert sse_message(JobEvent(event_id(4), "succeeded", None, at)).endswith(b"data: null\n\n")
    assert sse_message(None) == KEEPALIVE == b": keep-alive\n\n"
    assert JobEvent(event_id(4), "failed", None, at).is_end
    assert not event.is_end
