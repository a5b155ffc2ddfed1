"""The checks of the feature mix (bench/soak/mix.py):

- **concurrency**: :class:`LimitWatch` samples the size of the concurrency limit's running set
  (`<prefix>:{<queue>}:limit:slots:running`, its slots) every `every` seconds over a direct
  connection: it must never be above the limit;
- **rate**: it also reads the `started_at` stamp (the Redis clock, ms) of each `limited` job soon
  after the ledger shows it ended (before its result expires): at most `limit_rate` starts in any
  one-second window, and the rate reached. A job run twice (a killed worker) gives one stamp, its
  last start, so the count can only be low by the re-runs of killed workers' jobs;
- **no slot leaked**: once drained, the running set and the held sets of both limits are empty;
- **workflows**: in the ledger, every run of a child starts after every run of its parents ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import redis

from bench.adapters.starts import most_in_a_second
from bench.soak.mix import FeatureProducer, Follower, Mix, stream_summary
from bench.soak.world import World
from jobd.redis.keys import QueueKeys
from tests.support.checker import Entry, runs_of

LIMITS = ("rate", "slots")


class LimitWatch(threading.Thread):
    """See the module docstring. `stop()` ends the sampling after one last stamp collection."""

    def __init__(self, world: World, prefix: str, queue: str, sent: Callable[[], list[str]],
                 ended: Callable[[list[str]], list[str]], every: float = 0.05) -> None:  # fmt: skip
        super().__init__(name="limit-watch", daemon=True)
        self.world, self.sent, self.ended, self.every = world, sent, ended, every
        self.keys = QueueKeys(prefix, queue)
        self.running_key = self.keys.limit("slots") + "running"
        self.samples = 0
        self.peak = 0
        self.over: list[tuple[float, int]] = []
        self.stamps: dict[str, int] = {}
        self.errors = 0
        self._pending: list[str] = []
        self._taken = 0
        self._halt = threading.Event()
        self._client = world.client(timeout=0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(60)
        self._collect(final=True)
        self._client.close()

    def run(self) -> None:
        rounds = 0
        while not self._halt.wait(self.every):
            try:
                size = int(self._client.zcard(self.running_key))
            except (redis.RedisError, OSError):
                self.errors += 1
                continue
            self.samples += 1
            self.peak = max(self.peak, size)
            rounds += 1
            if rounds % 40 == 0:  # every ~2 s
                self._collect()

    def limit_sizes(self) -> dict[str, int]:
        """Members left in each limit's running and held sets (0 once every job has ended)."""
        with self.world.client() as conn:
            found = {}
            for name in LIMITS:
                for role in ("running", "held"):
                    key = self.keys.limit(name) + role
                    kind = conn.type(key).decode()
                    found[f"{name}:{role}"] = (
                        int(conn.zcard(key)) if kind == "zset" else int(conn.exists(key))
                    )
            return found

    def _collect(self, final: bool = False) -> None:
        sent = self.sent()
        self._pending += sent[self._taken :]
        self._taken = len(sent)
        waiting = set(self.ended(self._pending))
        ids = [job_id for job_id in self._pending if job_id not in waiting]
        if not ids:
            return
        try:
            with self.world.client(timeout=5 if final else 0.5) as conn:
                pipe = conn.pipeline(transaction=False)
                for job_id in ids:
                    pipe.hget(self.keys.job(job_id), "started_at")
                values = pipe.execute()
        except (redis.RedisError, OSError):
            self.errors += 1
            return
        for job_id, value in zip(ids, values, strict=True):
            if value is not None:
                self.stamps[job_id] = int(value)
        self._pending = [job_id for job_id in self._pending if job_id not in self.stamps]


def workflow_order(entries: list[Entry], parents: Mapping[str, list[str]]) -> list[str]:
    """Children that started before a parent's run ended (or ran while a parent never ended)."""
    runs = runs_of(entries)
    problems = []
    for child, mine in sorted(parents.items()):
        child_runs = runs.get(child, [])
        if not child_runs:
            continue  # a loss, reported by the checker
        first_start = min(run.start for run in child_runs)
        for parent in mine:
            ends = [run.end for run in runs.get(parent, []) if run.end is not None]
            if not ends:
                problems.append(f"{child} ran but its parent {parent} never ended")
            elif first_start < max(ends):
                problems.append(f"{child} started at {first_start:.6f}, before its parent "
                                f"{parent} ended at {max(ends):.6f}")  # fmt: skip
    return problems


def limit_summary(watch: LimitWatch, sent: int, limit_rate: int, concurrency: int,
                  left: Mapping[str, int]) -> dict[str, Any]:  # fmt: skip
    stamps = list(watch.stamps.values())
    span = (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else 0.0
    most = most_in_a_second(stamps) if stamps else 0
    return {
        "limit_rate_per_s": limit_rate,
        "limit_concurrency": concurrency,
        "jobs": sent,
        "stamps": len(stamps),
        "start_rate_per_s": round((len(stamps) - 1) / span, 1) if span > 0 else None,
        "most_starts_in_1s": most,
        "running_samples": watch.samples,
        "running_peak": watch.peak,
        "left_at_end": dict(left),
        "watch_errors": watch.errors,
        "ok": most <= limit_rate and watch.peak <= concurrency and not any(left.values()),
    }


def feature_report(mix: Mix, producer: FeatureProducer, follower: Follower, watch: LimitWatch,
                   left: Mapping[str, int], entries: list[Entry]) -> dict[str, Any]:  # fmt: skip
    """The features part of a run's result; `ok` false when a check failed."""
    limits = limit_summary(watch, len(producer.sent.limited), mix.limit_rate,
                           mix.limit_concurrency, left)  # fmt: skip
    events = {
        **stream_summary(follower.streams),
        "emitters": len(producer.sent.emitters),
        "follower_error": repr(follower.error) if follower.error else None,
    }
    order = workflow_order(entries, producer.sent.parents)
    workflows = {
        "flows": len(producer.sent.parents) // 3,
        "children": len(producer.sent.parents),
        "flow_retries": producer.sent.flow_retries,
        "flows_given_up": producer.sent.flows_given_up,
        "order_violations": order,
    }
    error = repr(producer.error) if producer.error else None
    ok = (limits["ok"] and not events["with_problems"] and not events["follower_error"]
          and not order and error is None)  # fmt: skip
    return {"mix": asdict(mix), "ok": ok, "producer_error": error, "limits": limits,
            "events": events, "workflows": workflows}  # fmt: skip
