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
from collections.abc import Callable
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
