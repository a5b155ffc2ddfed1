"""Running one job without touching Redis: decode its arguments, call the function (sync functions in a
thread pool) under its timeout with `current_job()` bound, and describe the outcome. Never raises,
except CancelledError when the worker itself cancels the job (drain, abort, lost lease)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from jobd.context import JobChannel, JobContext, set_current_job
from jobd.crypto import JobSeal
from jobd.errors import PayloadError, PayloadTooLarge, Retry, SerializationError, Throttled
from jobd.model import ErrorInfo, decode_payload
from jobd.serializer import Serializer
from jobd.worker.deadlines import Deadlines

TRACEBACK_LIMIT = 16_384
"""Characters of a traceback kept in Redis; the rest is cut (with a marker) to bound memory."""
MESSAGE_LIMIT = 4_096
"""Characters of an error message kept in Redis."""
OFF_LOOP_DECODE_BYTES = 65_536
"""Payloads larger than this are decoded in a thread, so that the event loop (heartbeats, other
jobs) gets turns while a large body is parsed."""
MAX_RETRY_DELAY = 366 * 86_400.0


# ClaimedJob, Result and store.Finish are made once per job and never changed afterwards. They are
# not frozen: a frozen dataclass sets each field through object.__setattr__, which made building a
# ClaimedJob four times as slow (1.7 µs instead of 0.4 µs, three records per job).
@dataclass(slots=True, kw_only=True)
class ClaimedJob:
    """A job as the claim script hands it to this worker."""

    id: str
    queue: str
    token: str
    function: str
    payload: bytes
    tries: int
    """Tries so far, this one included (1 on the first run)."""
    lost: int
    max_tries: int | None
    timeout: float | None
    enqueued_at: datetime
    priority: int
    due_at_ms: int = 0
    """When the job became due (ms, Redis clock): the start of its queue wait."""
    signature: bytes | None = None
    """The producer's signature (jobd.signing), if it signed the job."""
    problem: str = ""
    """Why the stored job cannot run at all (fields no producer writes); empty when it can."""
    links: bool = False
    """A job of a workflow (it has parents or dependants): its end has graph work to do."""
    headers: bytes = b""
    """The producer's trace context (JSON; empty when none), signed with the job."""
    trace: Any = None
    """The try's span while tracing is on (jobd.worker.tracing), else None."""
    traceparent: str = ""
    """That span's W3C traceparent: kept on the job when it ends, for its dependants' links."""
    seal: JobSeal | None = None
    """Set when its payload came encrypted (and was decrypted): encrypts its result, the message and
    traceback of its errors and its event data under the same key (jobd.worker.sealing)."""


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """An exception (retryable unless `final`)."""
    TIMED_OUT = "timed_out"
    RETRY = "retry"
    """The job raised jobd.Retry."""
    THROTTLED = "throttled"
    """The job raised jobd.Throttled: back to wait, uncharged, its limit paused."""


@dataclass(slots=True)
class Result:
    """What running the job produced."""

    outcome: Outcome
    value: bytes | None = None
    """The encoded return value (SUCCEEDED)."""
    error: ErrorInfo | None = None
    final: bool = False
    """True when another try cannot help (bad arguments, undecodable payload, unencodable result)."""
    retry_delay: float | None = None
    """Delay asked for by jobd.Retry (None: the configured backoff), or by jobd.Throttled."""
    limit: str | None = None
    """The limit jobd.Throttled named (None: every rate or cost limit of the job's function)."""


def error_info(error: BaseException) -> ErrorInfo:
    """Type name, message and (capped) traceback of an exception."""
    text = "".join(traceback.format_exception(error))
    if len(text) > TRACEBACK_LIMIT:
        text = (
            text[: TRACEBACK_LIMIT // 2] + "\n[… traceback cut …]\n" + text[-TRACEBACK_LIMIT // 2 :]
        )
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises is still the job's failure
        message = f"<{type(error).__name__} whose str() raised>"
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + " [… cut …]"
    return ErrorInfo(type(error).__name__, message, text)


def _retry_delay(delay: object) -> float | None:
    """The delay a job asked for with jobd.Retry, as a number of seconds jobd can schedule; None
    (the configured backoff) for anything else, such as NaN or a string."""
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        return None
    return min(max(float(delay), 0.0), MAX_RETRY_DELAY)


def _final(error_type: str, message: str) -> Result:
    return Result(Outcome.FAILED, error=ErrorInfo(error_type, message), final=True)


@functools.lru_cache(maxsize=1024)
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def _mismatch(
    job: ClaimedJob, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Result | None:
    """The final failure of arguments that do not fit the function's signature, if they don't."""
    signature = _signature(function)
    if signature is None:
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        return _final("TypeError", f"arguments do not match {job.function}(): {error}")
    return None


@dataclass(frozen=True, slots=True)
class Runner:
    """What every job run needs from the worker."""

    serializer: Serializer
    result_serializer: Serializer
    executor: Executor
    state: dict[str, Any]
    deadlines: Deadlines = field(default_factory=Deadlines)

    async def run(
        self,
        job: ClaimedJob,
        function: Callable[..., Any],
        *,
        is_async: bool,
        max_tries: int,
        timeout: float | None,
        channel: JobChannel | None = None,
    ) -> Result:
        """Run `job` with `function` under `timeout` seconds; see the module docstring.
        `channel` serves the job's calls to its worker (JobContext.set_cost)."""
        try:
            if len(job.payload) > OFF_LOOP_DECODE_BYTES:
                args, kwargs = await asyncio.to_thread(decode_payload, self.serializer, job.payload)
            else:
                args, kwargs = decode_payload(self.serializer, job.payload)
        except PayloadError as error:
            return _final("PayloadError", f"payload cannot be decoded: {error}")
        now = datetime.now(UTC)
        context = JobContext(
            id=job.id,
            function=job.function,
            queue=job.queue,
            try_number=job.tries,
            max_tries=max_tries,
            enqueued_at=job.enqueued_at,
            deadline=now + timedelta(seconds=timeout) if timeout else None,
            state=self.state,
            channel=channel,
        )
        deadline = self.deadlines.add(timeout) if timeout else None
        try:
            if is_async:
                set_current_job(context)
                value = await function(*args, **kwargs)
            else:
                value = await self._run_in_thread(context, function, args, kwargs)
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            assert task is not None
            if deadline is not None and deadline.take_back() == 0:
                return Result(
                    Outcome.TIMED_OUT,
                    error=ErrorInfo("TimeoutError", f"{job.function} timed out after {timeout} s"),
                )
            if task.cancelling():
                raise  # the worker cancelled the job (drain, abort, lost lease)
            return Result(Outcome.FAILED, error=error_info(error))
        except Throttled as request:
            return Result(
                Outcome.THROTTLED,
                error=error_info(request),
                retry_delay=_retry_delay(request.retry_after),
                limit=request.limit if isinstance(request.limit, str) else None,
            )
        except Retry as request:
            return Result(
                Outcome.RETRY, error=error_info(request), retry_delay=_retry_delay(request.delay)
            )
        except TypeError as error:
            # arguments that do not fit the signature fail for good; checked only now, as binding
            # them up front cost ~10 µs on every job
            return _mismatch(job, function, args, kwargs) or Result(
                Outcome.FAILED, error=error_info(error)
            )
        except BaseException as error:  # noqa: BLE001 - SystemExit or KeyboardInterrupt in a job is a failure of the job
            return Result(Outcome.FAILED, error=error_info(error))
        finally:
            if deadline is not None:
                # also when the job caught the timeout's cancel and returned or raised something
                # else: that outcome stands, and the cancel is taken back
                self.deadlines.discard(deadline)
        try:
            encoded = self.result_serializer.dumps(value, what="result")
        except PayloadTooLarge as error:
            return _final("ResultTooLarge", f"result exceeds max_result_bytes: {error}")
        except SerializationError as error:
            return _final("SerializationError", f"result not serializable: {error}")
        except Exception as error:  # noqa: BLE001 - a result object whose methods raise while encoded
            return _final(
                "SerializationError", f"result not serializable: {type(error).__name__}: {error}"
            )
        return Result(Outcome.SUCCEEDED, value=encoded)

    async def _run_in_thread(
        self,
        context: JobContext,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        copied = contextvars.copy_context()
        copied.run(set_current_job, context)
        call = functools.partial(copied.run, function, *args, **kwargs)
        # A thread cannot be cancelled: on timeout or abort the job is recorded at once and the thread
        # runs on until the function returns (its result is then discarded).
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)
