"""The daemon's log handler writes lines in batches without reordering or losing them, and its text
format is the standard one."""

from __future__ import annotations

import io
import logging

import pytest

from jobd.logs import MAX_PENDING, TEXT_FORMAT, BatchingStreamHandler, TextFormatter
from tests.support.wait import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(
    message: str,
    level: int = logging.INFO,
    created: float = 1_764_100_000.25,
    event: str = "job_started",
) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "jobd.test", "levelno": level, "levelname": logging.getLevelName(level),
         "msg": message, "created": created, "msecs": (created % 1) * 1000, "event": event}
    )  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


def handler_for(
    stream: io.StringIO, clock: Clock, interval: float = 3600.0
) -> BatchingStreamHandler:
    """An interval of an hour keeps the background thread out of the way of exact assertions."""
    handler = BatchingStreamHandler(stream, interval=interval, clock=clock)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    return handler


def test_first_line_after_a_quiet_spell_goes_out_at_once(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    handler.handle(record("one"))
    assert stream.getvalue() == "INFO one\n"


def test_lines_in_a_burst_wait_and_keep_their_order(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    handler.handle(record("one"))
    handler.handle(record("two"))
    handler.handle(record("three"))
    assert stream.getvalue() == "INFO one\n"
    handler.flush()
    assert stream.getvalue() == "INFO one\nINFO two\nINFO three\n"


def test_a_warning_takes_everything_before_it_along(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    handler.handle(record("one"))
    handler.handle(record("two"))
    handler.handle(record("careful", logging.WARNING))
    assert stream.getvalue() == "INFO one\nINFO two\nWARNING careful\n"


@pytest.mark.parametrize("event", ["worker_running", "redis_down", ""])
def test_lines_other_than_jobs_go_out_at_once_with_what_waits(clock: Clock, event: str) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    handler.handle(record("one"))
    handler.handle(record("two"))
    handler.handle(record("worker state", event=event))
    assert stream.getvalue() == "INFO one\nINFO two\nINFO worker state\n"


def test_a_line_after_the_interval_writes_the_batch(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock, interval=0.05)
    handler.handle(record("one"))
    handler.handle(record("two"))
    clock.now += 0.06
    handler.handle(record("three"))
    assert stream.getvalue() == "INFO one\nINFO two\nINFO three\n"


def test_a_full_batch_is_written_without_waiting(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    for number in range(MAX_PENDING + 1):
        handler.handle(record(f"line {number}"))
    assert stream.getvalue().count("\n") == MAX_PENDING + 1


def test_the_background_thread_writes_waiting_lines() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=0.01)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record("one"))
    handler.handle(record("two"))  # held: the first line was written just now
    wait_until(lambda: stream.getvalue() == "one\ntwo\n", timeout=5, message="the held line")


def test_logging_shutdown_writes_what_waits(clock: Clock) -> None:
    stream = io.StringIO()
    handler = handler_for(stream, clock)
    logger = logging.getLogger("jobd.test.shutdown")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.warning("first", extra={"event": "job_dead"})
        logger.info("second", extra={"event": "job_finished"})
        assert stream.getvalue() == "WARNING first\n"
        logging.shutdown([lambda: handler])  # what logging's atexit hook does for each handler
        assert stream.getvalue() == "WARNING first\nINFO second\n"
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("created", [1_764_100_000.25, 1_764_100_000.999, 1_764_100_061.0])
def test_text_format_matches_the_standard_formatter(created: float) -> None:
    standard = logging.Formatter(TEXT_FORMAT)
    ours = TextFormatter()
    for _ in range(2):  # the second round comes from the cache
        entry = record("job 1 started", created=created)
        assert ours.format(entry) == standard.format(record("job 1 started", created=created))
