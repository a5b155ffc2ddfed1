"""One /metrics for the group: the workers' own /metrics, scraped and combined family by family.

Counters and histograms are summed over the workers, and a worker that died keeps what it had
counted (its last scraped values are carried over), so a sum never goes down when one restarts.
Gauges are combined by what they describe (GAUGES): per-process figures are summed, figures every
worker reads from the shared Redis are taken once (from the first worker, in slot order, that has
the series: never multiplied by N), and the rest by their meaning (min, max). A gauge not in the
table is summed; tests/unit/test_supervisor_metrics.py fails for a gauge of jobd.ops.metrics that is
not listed, so a new one is classified when it is added.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


class Combine(StrEnum):
    SUM = "sum"
    ONCE = "once"  # the same Redis figure in every worker: the first worker's value
    MAX = "max"
    MIN = "min"


GAUGES: dict[str, Combine] = {
    # per process: the group's total
    "jobd_jobs_running": Combine.SUM,
    "jobd_worker_slots": Combine.SUM,
    "process_resident_memory_bytes": Combine.SUM,
    "process_virtual_memory_bytes": Combine.SUM,
    "process_open_fds": Combine.SUM,
    # read from the shared Redis by every worker: one value, not N times it
    "jobd_queue_jobs": Combine.ONCE,
    "jobd_queue_oldest_job_age_seconds": Combine.ONCE,
    "jobd_limit_slots_used": Combine.ONCE,
    "jobd_limit_jobs_waiting": Combine.ONCE,
    # the same in every worker
    "jobd_build_info": Combine.ONCE,
    "python_info": Combine.ONCE,
    "process_max_fds": Combine.MIN,
    # by meaning: the latest success, the worst loop, the oldest process
    "jobd_cron_last_success_timestamp_seconds": Combine.MAX,
    "jobd_event_loop_lag_seconds": Combine.MAX,
    "process_start_time_seconds": Combine.MIN,
    # 1 only while true of every worker (as /readyz)
    "jobd_redis_up": Combine.MIN,
    "jobd_worker_ready": Combine.MIN,
}
"""How each gauge family is combined over the workers."""

CUMULATIVE = frozenset({"counter", "histogram", "summary"})
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def combine_of(family: Metric) -> Combine:
    if family.type in CUMULATIVE:
        return Combine.SUM
    if family.name.endswith("_created"):  # when a counter series began: the earliest
        return Combine.MIN
    return GAUGES.get(family.name, Combine.SUM)


def _key(name: str, labels: dict[str, str]) -> SeriesKey:
    return name, tuple(sorted(labels.items()))


def _fold(combine: Combine, current: float | None, value: float) -> float:
    if current is None:
        return value
    if combine == Combine.SUM:
        return current + value
    if combine == Combine.MAX:
        return max(current, value)
    if combine == Combine.MIN:
        return min(current, value)
    return current  # ONCE: the first worker's value stands


class _Snapshot:
    """The families a collector yields (generate_latest wants a registry of collectors)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Aggregator:
    """The last scrape of every worker process (by pid), and the counts of the dead ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scrapes: dict[int, list[Metric]] = {}
        self._retired: dict[str, dict[SeriesKey, float]] = {}
        self._gone: set[int] = set()
        self._families: dict[str, tuple[str, str]] = {}
        """Name -> (help, type) of every family seen, in the order first seen."""

    def update(self, pid: int, text: str) -> None:
        """Keep `text`, the /metrics of worker process `pid`."""
        families = list(text_string_to_metric_families(text))
        with self._lock:
            if pid in self._gone:
                return  # scraped just before it died: retire() already kept its counts
            self._scrapes[pid] = families
            for family in families:
                self._families.setdefault(family.name, (family.documentation, family.type))

    def retire(self, pid: int) -> None:
        """Worker process `pid` is gone: keep what it counted (its last scrape) for the sums."""
        with self._lock:
            self._gone.add(pid)
            for family in self._scrapes.pop(pid, []):
                if family.type not in CUMULATIVE:
                    continue
                totals = self._retired.setdefault(family.name, {})
                for sample in family.samples:
                    key = _key(sample.name, sample.labels)
                    totals[key] = totals.get(key, 0.0) + sample.value

    def render(self, pids: Sequence[int], extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text of the workers `pids` (slot order), the dead ones' counts, `extra`."""
        with self._lock:
            families = self._combined(pids)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot([*families, *extra]))
        return generate_latest(registry)

    def _combined(self, pids: Sequence[int]) -> list[Metric]:
        values: dict[str, dict[SeriesKey, float]] = {}
        for pid in pids:
            for family in self._scrapes.get(pid, []):
                combine = combine_of(family)
                series = values.setdefault(family.name, {})
                for sample in family.samples:
                    key = _key(sample.name, sample.labels)
                    series[key] = _fold(combine, series.get(key), sample.value)
        for name, totals in self._retired.items():
            series = values.setdefault(name, {})
            for key, value in totals.items():
                series[key] = series.get(key, 0.0) + value
        combined = []
        for name, (documentation, kind) in self._families.items():
            family = Metric(name, documentation, kind)
            for (sample_name, labels), value in values.get(name, {}).items():
                family.add_sample(sample_name, dict(labels), value)
            combined.append(family)
        return combined
