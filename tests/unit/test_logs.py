"""The daemon's log handler writes lines in batches without reordering or losing them, its text
format is the standard one, and a job's line made by `log_fast` is the record logging makes."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import jobd.ops.logs
from jobd.ops.logs import MAX_PENDING, TEXT_FORMAT, BatchingStreamHandler, TextFormatter, log_fast
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


def test_text_format_with_arguments_and_an_exception_matches_the_standard_formatter() -> None:
    standard = logging.Formatter(TEXT_FORMAT)
    ours = TextFormatter()
    try:
        raise ValueError("boom")
    except ValueError as error:
        failed = (type(error), error, error.__traceback__)
    for exc_info in (None, failed):
        entry = record("job %s took %.3fs")
        entry.args, entry.exc_info = ("j1", 0.25), exc_info
        twin = record("job %s took %.3fs")
        twin.args, twin.exc_info = ("j1", 0.25), exc_info
        assert ours.format(entry) == standard.format(twin)
        assert entry.message == "job j1 took 0.250s"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lean(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collect]:
    """The switches setup_logging sets, and a logger whose records are collected."""
    monkeypatch.setattr(jobd.ops.logs, "_prototypes", {})
    monkeypatch.setattr(logging, "_srcfile", None)
    for switch in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, switch, False)
    collect = Collect()
    logger = logging.getLogger("jobd.test.fast")
    logger.addHandler(collect)
    monkeypatch.setattr(logger, "level", logging.INFO)
    yield collect
    logger.removeHandler(collect)


TIMES = {"created", "msecs", "relativeCreated"}


def test_a_fast_line_is_the_record_logging_makes(
    lean: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    make_record = logging.Logger.makeRecord

    def counted(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(self.name)
        return make_record(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    logger = logging.getLogger("jobd.test.fast")
    extra: dict[str, object] = {"event": "job_started", "job_id": "j1", "try": 2}
    for _ in range(2):  # the second from the cached prototype
        logger.log(logging.INFO, "job %s started, try %d", "j1", 2, extra=extra)
        log_fast(logger, logging.INFO, "job %s started, try %d", ("j1", 2), extra)
        standard, fast = lean.records[-2:]
        assert type(fast) is logging.LogRecord
        assert {k: v for k, v in vars(fast).items() if k not in TIMES} == {
            k: v for k, v in vars(standard).items() if k not in TIMES
        }
        assert fast.getMessage() == "job j1 started, try 2"
        assert fast.created == pytest.approx(standard.created, abs=5.0)
        assert fast.msecs == int((fast.created % 1) * 1000)
        assert fast.relativeCreated == pytest.approx(standard.relativeCreated, abs=5000.0)
    # logger.log made a record each time; log_fast only its prototype, once
    assert len(made) == 3


def test_a_fast_line_below_the_level_is_not_made(lean: Collect) -> None:
    log_fast(logging.getLogger("jobd.test.fast"), logging.DEBUG, "quiet %s", ("x",), {})
    assert lean.records == []


def test_a_fast_line_goes_through_the_applications_record_factory(
    lean: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    standard_factory = logging.getLogRecordFactory()

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = standard_factory(*args, **kwargs)
        vars(made)["trace_id"] = "t-1"  # what a tracing library's factory adds
        return made

    monkeypatch.setattr(logging, "_logRecordFactory", tagged)
    log_fast(logging.getLogger("jobd.test.fast"), logging.INFO, "job %s", ("j1",), {"job_id": "j1"})
    (made,) = lean.records
    assert vars(made)["trace_id"] == "t-1"
    assert vars(made)["job_id"] == "j1"
