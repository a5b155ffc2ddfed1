"""The job handler: what the worker does with one claimed job from start to stored outcome. It picks
the function and runs it, then stores the outcome on one of three paths, each a short method:
succeeded (`_succeed`), another try later (`_retry`), or failed for good (`_dead_letter`). On
cancellation it requeues (drain), aborts, or lets go (lost). Each event is one log line and a
metric."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from jobd.config.settings import RetrySettings
from jobd.context import JobChannel
from jobd.crypto import MARK, Keys
from jobd.model import ErrorInfo, encode_error
from jobd.ops.logs import log_fast
from jobd.signing import signature_problem
from jobd.worker import sealing
from jobd.worker.backoff import backoff_delay
from jobd.worker.channel import WorkerChannel
from jobd.worker.context import WorkerContext
from jobd.worker.cron import JOB_ID_PREFIX as CRON_JOB_PREFIX
from jobd.worker.cron import entry_of
from jobd.worker.events import EventWriter
from jobd.worker.finisher import Finisher
from jobd.worker.flows import Resolver
from jobd.worker.functions import RegisteredFunction
from jobd.worker.limits import CostChannel, NoCostLimits, cost_limits, pause_for
from jobd.worker.reports import JobReports
from jobd.worker.runner import ClaimedJob, Outcome, Result, Runner
from jobd.worker.running import RunningJob
from jobd.worker.stats import OutcomeCounts

if TYPE_CHECKING:
    from jobd.worker.tracing import JobTracer
from jobd.worker.store import Finish

logger = logging.getLogger("jobd.jobs")

_DEAD_REASONS = {
    "UnknownFunction": "unknown_function",
    "PayloadError": "decode",
    "PayloadTooLarge": "payload_too_large",
    "ResultTooLarge": "result_too_large",
    "WorkerLost": "worker_lost",
    "SignatureInvalid": "signature",
    "InvalidJob": "invalid_job",
    "Throttled": "throttled",
    "DecryptError": sealing.DEAD_REASON,
}


_NO_COST_LIMITS = NoCostLimits()


def _event(job: ClaimedJob, **fields: object) -> dict[str, object]:
    """Structured fields of a job's log line (shown as such by --log-format json)."""
    return {
        "job_id": job.id,
        "function": job.function,
        "queue": job.queue,
        "try": job.tries,
        **fields,
    }


class JobHandler:
    """Turns a claimed job into a stored outcome; never lets an exception escape to the worker."""

    def __init__(
        self,
        context: WorkerContext,
        *,
        runner: Runner,
        finisher: Finisher,
        functions: Mapping[str, RegisteredFunction],
        events: EventWriter,
        resolver: Resolver,
        outcomes: OutcomeCounts,
        signing_key: bytes | None = None,
        tracer: JobTracer | None = None,
        encryption_keys: Keys | None = None,
    ) -> None:
        """`signing_key`: with worker.signing_key, only jobs signed with it run (jobd.signing).
        `encryption_keys` decrypt encrypted jobs (jobd.worker.sealing)."""
        self.settings = context.settings
        self.worker_id = context.worker_id
        self.call = context.call
        self.store = context.store
        self.metrics = context.metrics
        self.running = context.running
        self.runner = runner
        self.finisher = finisher
        self.functions = functions
        self.events = events
        self.resolver = resolver
        self.outcomes = outcomes
        self.tracer = tracer
        """With [tracing] enabled, the spans of the tries (jobd.worker.tracing), else None."""
        self.signing_key = signing_key
        self.encryption_keys = encryption_keys
        self.reports = JobReports(context.metrics, context.settings, functions)
        self._label = self.reports.label
        self._series = self.reports.series
        self._cron_names = frozenset(entry.name for entry in self.settings.cron)
        self._cost_limits = {name: cost_limits(self.settings, name) for name in functions}

    async def handle(self, entry: RunningJob, claimed_at_ms: int) -> None:
        job = entry.job
        started = time.monotonic()
        series = self._series(job.queue, job.function)
        series.started.inc()
        if job.due_at_ms:
            series.wait.observe(max(0.0, (claimed_at_ms - job.due_at_ms) / 1000))
        if self.tracer is not None:  # first: the log lines of the try carry its ids
            job.trace = await self.tracer.start_try(job, claimed_at_ms)
        if logger.isEnabledFor(logging.INFO):
            log_fast(
                logger, logging.INFO, "job %s started: %s on queue %s, try %d",
                (job.id, job.function, job.queue, job.tries), _event(job, event="job_started"),
            )  # fmt: skip
        try:
            try:
                result = await self._run(job)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or entry.cancel_reason is None:
                    raise
                task.uncancel()
                await self._settle_events(job, entry.cancel_reason)
                await self._cancelled(job, entry.cancel_reason, time.monotonic() - started)
            else:
                self.running.end(entry)
                if job.trace is not None and result.error is not None:
                    assert self.tracer is not None
                    self.tracer.error(job.trace, result.error)
                await self._settle_events(job, None)
                await self._store(job, result, time.monotonic() - started)
            if job.links:  # its dependants are told at once, not at the next sweep
                self.resolver.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s: could not store its outcome", job.id)
        finally:
            if job.trace is not None:
                assert self.tracer is not None
                self.tracer.end(job.trace)

    async def _settle_events(self, job: ClaimedJob, cancel_reason: str | None) -> None:
        """What the job emitted goes to its stream before its outcome (and end event) does; a
        job whose lease was lost writes nothing more."""
        if self.events.has_events(job):
            if cancel_reason == "lost":
                self.events.discard(job)
            else:
                await self.events.settle(job, self.finisher.deadline)

    def _refusal(self, job: ClaimedJob) -> Result | None:
        """Why the job must not run at all, before anything of it is decoded: fields no producer
        writes, or (with worker.signing_key) a missing or wrong signature."""
        if job.problem:
            message = f"cannot run this job: {job.problem}"
            return Result(Outcome.FAILED, error=ErrorInfo("InvalidJob", message), final=True)
        key = self.signing_key
        if key is not None:
            problem = signature_problem(
                key, job.signature, job.id, job.queue, job.function, job.payload, job.headers
            )
            if problem is not None:
                error = ErrorInfo("SignatureInvalid", f"signature invalid: {problem}")
                return Result(Outcome.FAILED, error=error, final=True)
        return None

    async def _run(self, job: ClaimedJob) -> Result:
        # the signature covers the stored (encrypted) payload: checked before it is decrypted
        refusal = self._refusal(job)
        if refusal is None and job.payload.startswith(MARK):  # a plain job awaits nothing
            refusal = await sealing.unseal(job, self.encryption_keys)
        if refusal is not None:
            return refusal
        registered = self.functions.get(job.function)
        if registered is None:
            names = ", ".join(sorted(self.functions)) or "none"
            message = (
                f"function {job.function!r} is not registered on worker {self.worker_id} "
                f"(registered: {names})"
            )
            return Result(Outcome.FAILED, error=ErrorInfo("UnknownFunction", message), final=True)
        function = registered.settings
        max_tries = job.max_tries or function.max_tries
        if job.tries > max_tries:
            message = f"no tries left: the worker running try {job.tries - 1} of {max_tries} died"
            return Result(Outcome.FAILED, error=ErrorInfo("WorkerLost", message), final=True)
        limits = self._cost_limits.get(job.function)
        channel: JobChannel = WorkerChannel(
            job,
            writer=self.events,
            cost=CostChannel(self.store, self.call, job, limits) if limits else _NO_COST_LIMITS,
            parents=self.resolver.parent_results,
        )
        return await self.runner.run(
            job,
            registered.func,
            is_async=registered.is_async,
            max_tries=max_tries,
            timeout=job.timeout or function.timeout,
            channel=channel,
        )

    def _function_settings(self, job: ClaimedJob) -> tuple[int, float, RetrySettings]:
        function = self.settings.function_for(job.function)
        defaults = self.settings.defaults
        if function is None:
            return job.max_tries or defaults.max_tries, defaults.keep_result, defaults.retry
        return job.max_tries or function.max_tries, function.keep_result, function.retry

    def _finished(
        self, job: ClaimedJob, outcome: str, seconds: float, *, final: bool = False
    ) -> None:
        """A try ended as `outcome` (`final`: the job failed for good): metrics, stats, span."""
        self.outcomes.count(job.queue, job.function, outcome, final=final)
        if job.trace is not None:
            assert self.tracer is not None
            self.tracer.outcome(job.trace, outcome)
        series = self._series(job.queue, job.function)
        series.finished[outcome].inc()
        series.duration.observe(seconds)
        if job.id.startswith(CRON_JOB_PREFIX):
            self._cron_finished(job, outcome)

    def _cron_finished(self, job: ClaimedJob, outcome: str) -> None:
        """A try of a cron tick's job ended: counted for its entry, if configured (bounded labels)."""
        name = entry_of(job.id)
        if name is None or name not in self._cron_names:
            return
        self.metrics.cron_runs.labels(name, outcome).inc()
        if outcome == "succeeded":
            self.metrics.cron_last_success.labels(name).set(time.time())

    async def _store(self, job: ClaimedJob, result: Result, seconds: float) -> None:
        max_tries, keep_result, retry = self._function_settings(job)
        keep_ms = round(keep_result * 1000)
        if result.outcome == Outcome.SUCCEEDED:
            assert result.value is not None
            await self._succeed(job, result.value, keep_ms, seconds)
            return
        if result.outcome == Outcome.THROTTLED:
            await self._throttle(job, result, seconds)
            return
        error = result.error or ErrorInfo("Error", "unknown")
        outcome = "timed_out" if result.outcome == Outcome.TIMED_OUT else "failed"
        if result.final or job.tries >= max_tries:
            await self._dead_letter(job, error, outcome, keep_ms, seconds)
            return
        delay = result.retry_delay
        if delay is None:
            delay = backoff_delay(retry, job.tries)
        await self._retry(job, error, outcome, delay, seconds)

    async def _succeed(self, job: ClaimedJob, value: bytes, keep_ms: int, seconds: float) -> None:
        """Store the result; the job is done."""
        stored = sealing.seal_result(job, value)
        verdict = await self.finisher.submit(Finish(job, "succeeded", stored, keep_ms, False))
        if self._stored(job, verdict, seconds):
            self._finished(job, "succeeded", seconds)
            if logger.isEnabledFor(logging.INFO):
                log_fast(
                    logger, logging.INFO, "job %s succeeded in %.3fs", (job.id, seconds),
                    _event(job, event="job_finished", outcome="succeeded", duration=seconds),
                )  # fmt: skip

    async def _dead_letter(
        self, job: ClaimedJob, error: ErrorInfo, outcome: str, keep_ms: int, seconds: float
    ) -> None:
        """No try left, or none may be made: store the error and keep the job among the dead."""
        verdict = await self.finisher.submit(
            Finish(job, "failed", encode_error(error, job.seal), keep_ms, True)
        )
        if self._stored(job, verdict, seconds):
            self._finished(job, outcome, seconds, final=True)
            reason = _DEAD_REASONS.get(error.type, "failed")
            self.metrics.dead_lettered.labels(job.queue, self._label(job.function), reason).inc()
            logger.error(
                "job %s failed for good on try %d, dead-lettered: %s: %s", job.id, job.tries,
                error.type, error.message,
                extra=_event(job, event="job_dead", outcome=outcome, duration=seconds,
                             error_type=error.type, reason=reason),
            )  # fmt: skip

    async def _retry(
        self, job: ClaimedJob, error: ErrorInfo, outcome: str, delay: float, seconds: float
    ) -> None:
        """Schedule the next try `delay` seconds from now (Redis's clock)."""
        verdict, due_ms = await self.call(
            "retry", functools.partial(self.store.retry, job, round(delay * 1000), error)
        )
        if job.trace is not None:
            assert self.tracer is not None
            self.tracer.event(job.trace, "retry", {"jobd.retry.delay_s": delay})
        if self._stored(job, verdict, seconds):
            outcome = "retried" if outcome == "failed" else outcome  # as the metric counts it
            self._finished(job, outcome, seconds)
            due = datetime.fromtimestamp(due_ms / 1000, UTC).isoformat(timespec="milliseconds")
            logger.warning(
                "job %s %s on try %d (%s: %s); next try at %s", job.id,
                "timed out" if outcome == "timed_out" else "failed", job.tries, error.type,
                error.message, due,
                extra=_event(job, event="job_retry", outcome=outcome, duration=seconds,
                             error_type=error.type, next_try_at=due),
            )  # fmt: skip

    async def _throttle(self, job: ClaimedJob, result: Result, seconds: float) -> None:
        """The service refused the job (jobd.Throttled): pause its limits for the fleet and put it
        back to wait, uncharged; dead-lettered once throttled longer than max_throttled."""
        pause = pause_for(self.settings, job.function, result.limit, result.retry_delay)
        error = result.error or ErrorInfo("Throttled", "throttled")
        verdict, until_ms = await self.call(
            "throttle",
            functools.partial(
                self.store.throttle, job, pause.limits, round(pause.seconds * 1000),
                round(pause.max_throttled * 1000), error,
            ),
        )  # fmt: skip
        paused = ",".join(name for name, _ in pause.limits)
        if job.trace is not None:
            assert self.tracer is not None
            attributes = {"jobd.limit": paused, "jobd.pause_s": pause.seconds}
            self.tracer.event(job.trace, "throttled", attributes)
        if verdict == "dead":
            self._finished(job, "failed", seconds, final=True)
            self.metrics.dead_lettered.labels(
                job.queue, self._label(job.function), "throttled"
            ).inc()
            logger.error(
                "job %s throttled for longer than max_throttled, dead-lettered", job.id,
                extra=_event(job, event="job_dead", outcome="failed", reason="throttled"),
            )  # fmt: skip
            return
        if self._stored(job, verdict, seconds):
            self._finished(job, "throttled", seconds)
            for name, _ in pause.limits or (("", False),):
                self.metrics.limit_throttled.labels(job.queue, name).inc()
            until = datetime.fromtimestamp(until_ms / 1000, UTC).isoformat(timespec="milliseconds")
            logger.warning(
                "job %s throttled on try %d (%s); %s until %s, not charged", job.id, job.tries,
                error.message, f"limit {paused} paused" if paused else "waits", until,
                extra=_event(job, event="job_throttled", limit=paused, until=until),
            )  # fmt: skip

    async def _cancelled(self, job: ClaimedJob, reason: str, seconds: float) -> None:
        if reason == "lost":
            # another worker owns the job now; nothing of ours may be stored
            self._finished(job, "lost", seconds)
            return
        if reason == "abort":
            _, keep_result, _ = self._function_settings(job)
            error = encode_error(ErrorInfo("JobAborted", "aborted while running"))
            verdict = await self.finisher.submit(
                Finish(job, "aborted", error, round(keep_result * 1000), False)
            )
            if self._stored(job, verdict, seconds):
                self._finished(job, "aborted", seconds)
                logger.info(
                    "job %s aborted while running", job.id,
                    extra=_event(job, event="job_finished", outcome="aborted", duration=seconds),
                )  # fmt: skip
            return
        verdict = await self.call(
            "requeue",
            functools.partial(self.store.requeue, job),
            deadline=self.finisher.deadline,
        )
        if job.trace is not None:
            assert self.tracer is not None
            self.tracer.outcome(job.trace, "requeued")
        logger.info(
            "job %s: requeued by drain (%s)", job.id, verdict,
            extra=_event(job, event="job_requeued"),
        )  # fmt: skip

    def _stored(self, job: ClaimedJob, verdict: str, seconds: float) -> bool:
        """True when the outcome was stored; a stale token means another worker owns the job.
        'replayed' is ours too: redis-py re-sent a call whose reply was lost, and the first one
        stored it (found by tests/chaos F12: those outcomes went uncounted and unlogged)."""
        if verdict == "stale":
            self._finished(job, "lost", seconds)
            logger.warning(
                "job %s (%s): lease lost before its outcome was stored; another worker owns it",
                job.id, job.function, extra=_event(job, event="job_lost"),
            )  # fmt: skip
        return verdict in ("ok", "replayed")
