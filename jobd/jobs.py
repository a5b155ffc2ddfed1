"""What the worker does with one claimed job from start to stored outcome: pick the function, run it,
then finish, retry or dead-letter it; and on cancellation requeue (drain), abort, or let go (lost)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING

from jobd.execute import ClaimedJob, Outcome, Result, Runner
from jobd.model import ErrorInfo, encode_error
from jobd.retry import backoff_delay
from jobd.settings import RetrySettings
from jobd.store import Claim, Finish, Reaped

if TYPE_CHECKING:
    from jobd.worker import RunningJob, Worker

logger = logging.getLogger("jobd.jobs")


class JobHandler:
    """Turns a claimed job into a stored outcome; never lets an exception escape to the worker."""

    def __init__(self, worker: Worker, runner: Runner) -> None:
        self.worker = worker
        self.runner = runner
        self.settings = worker.settings

    async def handle(self, entry: RunningJob) -> None:
        job = entry.job
        started = time.monotonic()
        try:
            try:
                result = await self._run(job)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or entry.cancel_reason is None:
                    raise
                task.uncancel()
                await self._cancelled(job, entry.cancel_reason)
                return
            await self._store(job, result, time.monotonic() - started)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("job %s: could not store its outcome", job.id)

    async def _run(self, job: ClaimedJob) -> Result:
        registered = self.worker.functions.get(job.function)
        if registered is None:
            names = ", ".join(sorted(self.worker.functions)) or "none"
            return Result(
                Outcome.FAILED,
                error=ErrorInfo(
                    "UnknownFunction",
                    f"function {job.function!r} is not registered on worker "
                    f"{self.worker.worker_id} (registered: {names})",
                ),
                final=True,
            )
        function = registered.settings
        max_tries = job.max_tries or function.max_tries
        if job.tries > max_tries:
            return Result(
                Outcome.FAILED,
                error=ErrorInfo(
                    "WorkerLost",
                    f"no tries left: the worker running try {job.tries - 1} of {max_tries} died",
                ),
                final=True,
            )
        logger.debug("job %s started: %s try %d", job.id, job.function, job.tries)
        return await self.runner.run(
            job,
            registered.func,
            is_async=registered.is_async,
            max_tries=max_tries,
            timeout=job.timeout or function.timeout,
        )

    def _function_settings(self, job: ClaimedJob) -> tuple[int, float, RetrySettings]:
        function = self.settings.function_for(job.function)
        defaults = self.settings.defaults
        if function is None:
            return job.max_tries or defaults.max_tries, defaults.keep_result, defaults.retry
        return job.max_tries or function.max_tries, function.keep_result, function.retry

    async def _store(self, job: ClaimedJob, result: Result, seconds: float) -> None:
        max_tries, keep_result, retry = self._function_settings(job)
        keep_ms = round(keep_result * 1000)
        finisher = self.worker.finisher
        if result.outcome == Outcome.SUCCEEDED:
            assert result.value is not None
            verdict = await finisher.submit(Finish(job, "succeeded", result.value, keep_ms, False))
            self._log_verdict(job, verdict, f"succeeded in {seconds:.3f}s")
            return
        error = result.error or ErrorInfo("Error", "unknown")
        if result.final or job.tries >= max_tries:
            verdict = await finisher.submit(
                Finish(job, "failed", encode_error(error), keep_ms, True)
            )
            self._log_verdict(
                job,
                verdict,
                f"failed for good after try {job.tries}: {error.type}: {error.message}",
            )
            return
        delay = result.retry_delay
        if delay is None:
            delay = backoff_delay(retry, job.tries)
        verdict, _ = await self.worker.call(
            "retry", functools.partial(self.worker.store.retry, job, round(delay * 1000), error)
        )
        self._log_verdict(
            job,
            verdict,
            f"{result.outcome} on try {job.tries} ({error.type}: {error.message}); "
            f"retry in {delay:.3f}s",
        )

    async def _cancelled(self, job: ClaimedJob, reason: str) -> None:
        if reason == "lost":
            return  # another worker owns the job now; nothing of ours may be stored
        if reason == "abort":
            _, keep_result, _ = self._function_settings(job)
            error = encode_error(ErrorInfo("JobAborted", "aborted while running"))
            verdict = await self.worker.finisher.submit(
                Finish(job, "aborted", error, round(keep_result * 1000), False)
            )
            self._log_verdict(job, verdict, "aborted while running")
            return
        verdict = await self.worker.call(
            "requeue",
            functools.partial(self.worker.store.requeue, job),
            deadline=self.worker.finisher.deadline,
        )
        logger.info("job %s: requeued by drain (%s)", job.id, verdict)

    def _log_verdict(self, job: ClaimedJob, verdict: str, text: str) -> None:
        if verdict == "stale":
            logger.warning(
                "job %s (%s): lease lost before its outcome was stored; another worker owns it",
                job.id,
                job.function,
            )
        elif verdict == "ok":
            logger.info("job %s (%s, queue %s): %s", job.id, job.function, job.queue, text)

    def report_claim(self, claim: Claim) -> None:
        for job_id in claim.expired:
            logger.info("job %s: expired before it could start; dropped", job_id)
        for job_id in claim.dead:
            logger.error("job %s: payload above the size limit; dead-lettered", job_id)

    def report_reaped(self, queue: str, reaped: Reaped) -> None:
        for worker_id in reaped.workers:
            logger.warning("queue %s: worker %s is gone (no heartbeat)", queue, worker_id)
        for job_id in reaped.requeued:
            logger.warning("job %s: its worker died; queued again", job_id)
        for job_id in reaped.dead:
            logger.error("job %s: its worker died too often; dead-lettered", job_id)
