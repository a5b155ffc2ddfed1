"""Log output of the daemon: one line per event, as text for people or JSON for machines.

A busy worker logs two lines per job, and one write per line was about a third of its logging
cost, so those lines go out in batches: a job's line below WARNING (its `event` starts with
"job_") waits at most `FLUSH_INTERVAL` for companions, none after a quiet spell. Every other line
(the worker's start, states and stop, Redis trouble, WARNING and above) goes out at once, with
everything before it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

FLUSH_INTERVAL = 0.05
"""Longest delay of a job's INFO line; a worker killed with SIGKILL loses at most this much of them."""

MAX_PENDING = 500
"""Lines held at most before they are written regardless of the interval."""

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # fields passed with `extra=` (event, job_id, function, queue, try, outcome, duration …)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-11-26 10:00:00,123 INFO    jobd.jobs: message`, the standard layout; the date part is
    formatted once per second instead of once per line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        # TEXT_FORMAT without logging's generic steps (it checks which fields the format uses, then
        # applies it to the record's whole __dict__); the same attributes are set on the record
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname:<7} {record.name}: {record.message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached, text = self._second  # one tuple: threads that log at once see a matching pair
        if cached != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"


def _batched(record: logging.LogRecord) -> bool:
    event = getattr(record, "event", None)
    return record.levelno < logging.WARNING and isinstance(event, str) and event.startswith("job_")


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes lines in batches (see the module docstring). A daemon thread
    writes what waits; `flush()` (called by logging at exit) writes the rest."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream)
        self.interval = interval
        self._clock = clock
        self._pending: list[str] = []
        self._last_write = float("-inf")
        self._armed = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget_thread)

    def emit(self, record: logging.LogRecord) -> None:
        # called by handle() with the handler's lock held
        try:
            self._pending.append(self.format(record) + self.terminator)
            now = self._clock()
            if (
                not _batched(record)
                or len(self._pending) >= MAX_PENDING
                or now - self._last_write >= self.interval
            ):
                self._write_pending(now)
            elif not self._armed.is_set():
                self._arm()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own policy: report and go on
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending(self._clock())
        finally:
            self.release()

    def _write_pending(self, now: float) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.stream.write(text)
        if self.stream and hasattr(self.stream, "flush"):
            self.stream.flush()
        self._last_write = now

    def _arm(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._flush_loop, name="jobd-log", daemon=True)
            self._thread.start()
        self._armed.set()

    def _flush_loop(self) -> None:
        while True:
            self._armed.wait()
            time.sleep(self.interval)
            self.acquire()
            try:
                self._armed.clear()
                self._write_pending(self._clock())
            except Exception:  # noqa: BLE001 - a closed or broken stream: nothing left to do here
                self._pending.clear()
            finally:
                self.release()

    def _forget_thread(self) -> None:
        """In a forked child the thread is gone: the next line starts a new one."""
        self._thread = None
        self._armed = threading.Event()


# per (logger name, level): a made record's attributes, and its relativeCreated less its created
# (in ms), from which each copy's relativeCreated follows
_prototypes: dict[tuple[str, int], tuple[dict[str, object], float]] = {}


def _lean_records() -> bool:
    """True while records carry nothing that depends on where or in which thread they are made:
    the switches setup_logging sets, and logging's own record class."""
    return (
        logging._srcfile is None
        and not (logging.logThreads or logging.logProcesses or logging.logMultiprocessing)
        and logging.getLogRecordFactory() is logging.LogRecord
    )


def log_fast(
    logger: logging.Logger, level: int, msg: str, args: tuple[object, ...], extra: dict[str, object]
) -> None:
    """`logger.log(level, msg, *args, extra=extra)` for the two lines of every job.

    With the switches of setup_logging, the records of one logger and level differ only in time,
    message and extra fields, so this copies a prototype instead of running LogRecord.__init__ and
    makeRecord, which were half the cost of a line. Filters and handlers get the same record either
    way. Otherwise (a record factory of the application, caller information switched back on, a
    single mapping as `args`) this is `logger.log`. `extra` must not name a LogRecord attribute."""
    if not logger.isEnabledFor(level):
        return
    if not _lean_records() or (len(args) == 1 and isinstance(args[0], Mapping)):
        logger.log(level, msg, *args, extra=extra)
        return
    prototype = _prototypes.get((logger.name, level))
    if prototype is None:
        made = logger.makeRecord(
            logger.name, level, "(unknown file)", 0, "", (), None, "(unknown function)"
        )
        prototype = (dict(vars(made)), made.relativeCreated - made.created * 1000)
        _prototypes[logger.name, level] = prototype
    shared, relative_offset = prototype
    created = time.time()
    record = logging.LogRecord.__new__(logging.LogRecord)
    fields = vars(record)
    fields.update(shared)
    fields["msg"] = msg
    fields["args"] = args
    fields["created"] = created
    fields["msecs"] = int((created - int(created)) * 1000) + 0.0
    fields["relativeCreated"] = created * 1000 + relative_offset
    fields.update(extra)
    logger.handle(record)


def setup_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Send jobd's logs to stderr in the chosen format; replaces earlier handlers of this process."""
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format shows the caller's file and line, the thread or the process, so records need
    # not collect them: at two lines per job, finding the caller alone cost about a tenth of a
    # no-op job's time (the switches of the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
