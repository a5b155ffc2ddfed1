"""Producer-side validation: every bad option is refused before Redis is touched, naming the option."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from jobd.client import operations as commands
from jobd.errors import InvalidJobOption
from jobd.model import check_job_id


def test_defaults_and_conversions() -> None:
    options = commands.enqueue_options(
        queue="emails",
        delay=timedelta(seconds=1.5),
        priority=-3,
        max_tries=2,
        timeout=0.25,
        expires=60,
    )
    assert (options.delay_ms, options.timeout_ms, options.expires_ms) == (1500, 250, 60_000)
    assert (options.queue, options.priority, options.max_tries, options.at_ms) == (
        "emails",
        -3,
        2,
        None,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "a{b}"}, "queue 'a{b}' is not a valid queue name"),
        ({"queue": ""}, "queue '' is not a valid queue name"),
        ({"delay": -1}, "delay must be >= 0, got -1"),
        ({"delay": "5s"}, "delay must be a number of seconds or a timedelta, got '5s'"),
        ({"timeout": 0}, "timeout must be > 0, got 0"),
        ({"expires": float("inf")}, "expires must be a number of seconds or a timedelta"),
        ({"priority": 1001}, "priority must be between -1000 and 1000, got 1001"),
        ({"priority": 1.5}, "priority must be an integer, got 1.5"),
        # what equals the default 0 but is no int takes the checked path, not the cached one
        ({"priority": False}, "priority must be an integer, got False"),
        ({"priority": 0.0}, "priority must be an integer, got 0.0"),
        ({"queue": 7}, "queue 7 is not a valid queue name"),
        ({"queue": ["a"]}, "queue ['a'] is not a valid queue name"),
        ({"max_tries": 0}, "max_tries must be an integer >= 1, got 0"),
        ({"max_tries": True}, "max_tries must be an integer >= 1, got True"),
        ({"at": datetime(2030, 1, 1)}, "at must be a timezone-aware datetime"),
        ({"delay": 1, "at": datetime(2030, 1, 1).astimezone()}, "give either delay or at"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"queue": "default", **options}
    with pytest.raises(InvalidJobOption) as error:
        commands.enqueue_options(**arguments)  # type: ignore[arg-type]
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("job_id", ["", "has space", "new\nline", "nul\x00", "x" * 201])
def test_bad_job_ids(job_id: str) -> None:
    with pytest.raises(InvalidJobOption, match=r"job_id .* is not valid"):
        check_job_id(job_id)


@pytest.mark.parametrize("job_id", ["welcome:42", "a{b}c", "ü-ß", "x" * 200])
def test_good_job_ids(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


def test_bad_function_name() -> None:
    with pytest.raises(InvalidJobOption, match=r"function name 'send email' is not valid"):
        commands.check_function("send email")


def test_an_enqueue_that_sets_no_option_gets_the_queue_defaults() -> None:
    options = commands.enqueue_options(queue="emails")
    assert options == commands.EnqueueOptions(queue="emails")
    assert commands.enqueue_options(queue="emails") is options  # checked once per queue


def test_generated_job_ids_are_uuid4_hex() -> None:
    ids = {commands.new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (job_id, 4, uuid.RFC_4122)
