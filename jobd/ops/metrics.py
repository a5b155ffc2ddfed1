"""Prometheus metrics of one worker process, on a private registry (prefix `jobd_`, base units).

Labels are bounded: queue, function and cron entry names come from the configuration (a job naming
an unknown function is counted as function="unknown"), outcomes and reasons from fixed lists, errors
by class name. Never a job id.
"""

from __future__ import annotations

import platform
import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from jobd import __version__

OUTCOMES = (
    "succeeded", "failed", "retried", "timed_out", "aborted", "expired", "lost", "throttled",
)  # fmt: skip
"""Values of the `outcome` label of jobd_jobs_finished_total."""
DEAD_REASONS = (
    "failed",
    "unknown_function",
    "decode",
    "payload_too_large",
    "result_too_large",
    "worker_lost",
    "signature",
    "invalid_job",
    "throttled",
    "cost_above_limit",
)
"""Values of the `reason` label of jobd_jobs_dead_lettered_total."""
QUEUE_STATES = ("queued", "scheduled", "waiting", "running", "dead")

DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
    3600, 7200, 14400,
)  # fmt: skip
"""From a millisecond to four hours: jobs range from webhooks to nightly clean-ups."""


class Metrics:
    """Every metric of a worker process, registered on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._render_lock = threading.Lock()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.build_info = Gauge(
            "jobd_build_info", "Always 1; labels carry the jobd and Python versions.",
            ["version", "python"], registry=registry,
        )  # fmt: skip
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.jobs_started = Counter(
            "jobd_jobs_started_total", "Jobs this worker started.", ["queue", "function"],
            registry=registry,
        )  # fmt: skip
        self.jobs_finished = Counter(
            "jobd_jobs_finished_total",
            "Tries that ended, by outcome: succeeded, failed (for good), retried, timed_out, "
            "aborted, expired (dropped before starting), lost (lease lost to another worker).",
            ["queue", "function", "outcome"], registry=registry,
        )  # fmt: skip
        self.job_duration = Histogram(
            "jobd_job_duration_seconds", "Time a try took, from start to outcome.",
            ["queue", "function"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "jobd_job_queue_wait_seconds", "Time from a job's due time to its start.",
            ["queue"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.jobs_running = Gauge(
            "jobd_jobs_running",
            "Jobs running in this worker now: its slots in use (a job storing its outcome has "
            "given its slot back).",
            registry=registry,
        )
        self.worker_slots = Gauge(
            "jobd_worker_slots", "Jobs this worker may run at once (worker.concurrency).",
            registry=registry,
        )  # fmt: skip
        self.queue_jobs = Gauge(
            "jobd_queue_jobs", "Jobs in a queue by state (read from Redis in the background).",
            ["queue", "state"], registry=registry,
        )  # fmt: skip
        self.queue_oldest_age = Gauge(
            "jobd_queue_oldest_job_age_seconds",
            "How long the job next in line has been due (0 when the queue is empty).",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.dead_lettered = Counter(
            "jobd_jobs_dead_lettered_total", "Jobs this worker moved to the dead letters, by reason.",
            ["queue", "function", "reason"], registry=registry,
        )  # fmt: skip
        self.cron_runs = Counter(
            "jobd_cron_runs_total",
            "Tries of cron jobs that ended, by entry and outcome (the outcomes of "
            "jobd_jobs_finished_total).",
            ["entry", "outcome"], registry=registry,
        )  # fmt: skip
        self.cron_last_success = Gauge(
            "jobd_cron_last_success_timestamp_seconds",
            "When a job of the entry last succeeded on this worker (Unix time; max over workers).",
            ["entry"], registry=registry,
        )  # fmt: skip
        self.cron_fired = Counter(
            "jobd_cron_fired_total", "Ticks of the entry this worker enqueued (one worker per tick).",
            ["entry"], registry=registry,
        )  # fmt: skip
        self.cron_missed = Counter(
            "jobd_cron_missed_ticks_total",
            "Ticks of the entry that never ran (no worker running, missed policy), counted once "
            "for the fleet by the worker that fired the next tick.",
            ["entry"], registry=registry,
        )  # fmt: skip
        self.limit_held = Counter(
            "jobd_limit_held_total",
            "Jobs a limit held back when they were due to start (they wait, uncharged).",
            ["queue", "limit"], registry=registry,
        )  # fmt: skip
        self.events_written = Counter(
            "jobd_events_written_total",
            "Events that running jobs emitted and this worker wrote to their streams.",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.events_dropped = Counter(
            "jobd_events_dropped_total",
            "Events that jobs emitted but were not written: the worker's buffer was full (Redis "
            "slow or down) or Redis refused them (maxmemory); readers are told of the gap.",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.limit_throttled = Counter(
            "jobd_limit_throttled_total",
            "Tries that raised jobd.Throttled, by the limit they paused ('' when none).",
            ["queue", "limit"], registry=registry,
        )  # fmt: skip
        self.limit_wait = Histogram(
            "jobd_limit_wait_seconds",
            "How long jobs waited for a limit before they started (the limit that held them "
            "last); jobs no limit held are not observed.",
            ["queue", "limit"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.limit_slots = Gauge(
            "jobd_limit_slots_used",
            "Concurrency slots of a limit in use across the fleet (read from Redis in the "
            "background; per-group limits summed over their groups).",
            ["queue", "limit"], registry=registry,
        )  # fmt: skip
        self.limit_waiting = Gauge(
            "jobd_limit_jobs_waiting",
            "Jobs a limit holds back now (read from Redis in the background).",
            ["queue", "limit"], registry=registry,
        )  # fmt: skip
        self.redis_errors = Counter(
            "jobd_redis_errors_total", "Failed Redis calls, by exception class.", ["error"],
            registry=registry,
        )  # fmt: skip
        self.redis_reconnects = Counter(
            "jobd_redis_reconnects_total", "Times Redis became reachable again after errors.",
            registry=registry,
        )  # fmt: skip
        self.redis_data_loss = Counter(
            "jobd_redis_data_loss_detected_total",
            "Times Redis came back from a restart without the data this worker knew (no "
            "persistence).",
            registry=registry,
        )
        self.redis_up = Gauge(
            "jobd_redis_up", "1 while Redis answers this worker, else 0.", registry=registry
        )
        self.loop_lag = Gauge(
            "jobd_event_loop_lag_seconds", "How late the event loop ran its last timer.",
            registry=registry,
        )  # fmt: skip
        self.ready = Gauge(
            "jobd_worker_ready", "1 while the worker takes jobs (readiness).", registry=registry
        )

    def render(self) -> bytes:
        """The Prometheus text format of every metric (safe to call from another thread).

        One render at a time: fifty scrapes at once, each a few milliseconds of Python, kept
        fifty threads wanting the GIL, and the server's one accepting thread got it so rarely
        that a request waited more than 10 s for its answer (tests/system/test_security.py's
        burst of 500). Waiting on this lock, a thread does not compete for the GIL."""
        with self._render_lock:
            return generate_latest(self.registry)
