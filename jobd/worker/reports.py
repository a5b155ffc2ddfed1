"""The metrics and log lines of what happens to jobs around their runs: the labelled series of
each function (looked up once, declared at 0 as Prometheus advises), and what a claim or the
reaper did to jobs that never reached the handler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from jobd.config.settings import Settings
from jobd.ops.metrics import OUTCOMES, Metrics
from jobd.worker.functions import RegisteredFunction
from jobd.worker.store import Claim, Reaped

logger = logging.getLogger("jobd.jobs")

UNKNOWN = "unknown"
"""The function label of jobs naming a function the worker does not know (keeps labels bounded)."""
CLAIM_DEAD = {
    "payload_too_large": "payload above the size limit",
    "cost_above_limit": "its cost is above what its cost limit allows in a whole period",
    "invalid_job": "stored in a form no producer writes (forged or corrupted)",
}
"""Why the claim script dead-lettered a job, as the log line says it."""


@dataclass(frozen=True, slots=True)
class Series:
    started: Counter
    wait: Histogram
    duration: Histogram
    finished: dict[str, Counter]


class JobReports:
    """The series and the claim and reaper reports of one worker."""

    def __init__(
        self, metrics: Metrics, settings: Settings, functions: Mapping[str, RegisteredFunction]
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.functions = functions
        self._cache: dict[tuple[str, str], Series] = {}
        self._declare_series()

    def _declare_series(self) -> None:
        """Start the counters of started and ended tries at 0 for the labels the configuration
        names, as Prometheus advises: a series that appears with its first event hides that event
        from rate() and increase(), so an alert on failures would miss the first one. Each
        function counts on the queue it is configured for, if this worker consumes it; each cron
        entry likewise. Histograms and the dead-letter reasons appear with their first event: at
        0 for every function they made /metrics ten times longer and a scrape 30 times slower
        (12 functions: 794 lines, 10 ms to render)."""
        consumed = set(self.settings.worker.queues)
        metrics = self.metrics
        for name, function in self.settings.functions.items():
            if function.queue in consumed and name in self.functions:
                metrics.jobs_started.labels(function.queue, name)
                for outcome in OUTCOMES:
                    metrics.jobs_finished.labels(function.queue, name, outcome)
        for entry in self.settings.cron:
            for outcome in OUTCOMES:
                metrics.cron_runs.labels(entry.name, outcome)

    def label(self, function: str) -> str:
        return function if function in self.functions else UNKNOWN

    def series(self, queue: str, function: str) -> Series:
        """The labelled metric children of one queue and function, looked up once (keyed by the
        label: names of unknown functions, possibly forged, must not grow the cache)."""
        label = self.label(function)
        key = (queue, label)
        series = self._cache.get(key)
        if series is None:
            metrics = self.metrics
            series = self._cache[key] = Series(
                started=metrics.jobs_started.labels(queue, label),
                wait=metrics.queue_wait.labels(queue),
                duration=metrics.job_duration.labels(queue, label),
                finished={
                    outcome: metrics.jobs_finished.labels(queue, label, outcome)
                    for outcome in OUTCOMES
                },
            )
        return series

    def claim(self, queue: str, claim: Claim) -> None:
        for _, _, limit in claim.held:
            self.metrics.limit_held.labels(queue, limit).inc()
        for limit, waited_ms in claim.waited:
            self.metrics.limit_wait.labels(queue, limit).observe(waited_ms / 1000)
        for job_id, function in claim.expired:
            self.metrics.jobs_finished.labels(queue, self.label(function), "expired").inc()
            logger.info("job %s (%s): expired before it could start; dropped", job_id, function)
        for job_id, function, reason in claim.dead:
            label = self.label(function)
            self.metrics.dead_lettered.labels(queue, label, reason).inc()
            what = CLAIM_DEAD.get(reason, CLAIM_DEAD["invalid_job"])
            logger.error(
                "job %r (%r): %s; dead-lettered", job_id, function, what,
                extra={"event": "job_dead", "job_id": job_id, "queue": queue, "reason": reason},
            )  # fmt: skip

    def reaped(self, queue: str, reaped: Reaped) -> None:
        for worker_id in reaped.workers:
            logger.warning("queue %s: worker %s is gone (no heartbeat)", queue, worker_id)
        for job_id in reaped.requeued:
            logger.warning("job %s: its worker died; queued again", job_id)
        for job_id, function in reaped.dead:
            label = self.label(function)
            self.metrics.dead_lettered.labels(queue, label, "worker_lost").inc()
            logger.error("job %s (%s): its worker died too often; dead-lettered", job_id, function)
