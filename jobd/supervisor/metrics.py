"""The supervisor's own metrics, served beside the workers' combined ones; built at each scrape
from the process table (prometheus-client is imported only then, not at startup)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobd.supervisor.table import ProcessTable, SlotState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


def supervisor_families(table: ProcessTable) -> list[Metric]:
    """jobd_supervisor_*: workers wanted and running, restarts by how the worker ended, and the
    supervisor process itself (jobd_supervisor_process_*; the workers' process_* are their sums)."""
    from prometheus_client import ProcessCollector
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

    running = sum(slot.state == SlotState.RUNNING for slot in table.slots)
    restarts = CounterMetricFamily(
        "jobd_supervisor_restarts",
        "Worker processes started again after one died, by how it ended (exit, signal).",
        labels=["reason"],
    )
    for reason, count in sorted(table.restarts.items()):
        restarts.add_metric([reason], count)
    return [
        *ProcessCollector(namespace="jobd_supervisor", registry=None).collect(),
        GaugeMetricFamily(
            "jobd_supervisor_workers",
            "Worker processes the supervisor runs (--processes).",
            value=len(table.slots),
        ),
        GaugeMetricFamily(
            "jobd_supervisor_workers_running",
            "Worker processes that are running and said they are ready.",
            value=running,
        ),
        restarts,
    ]
