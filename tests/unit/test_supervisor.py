"""The parts of `jobd --processes N` that need no process: restart policy, metric combination, the
private notifications, and the --processes option."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobd.cli.parser import build_parser
from jobd.ops.metrics import Metrics
from jobd.ops.systemd import HTTP_PORT_FIELD, SUPERVISOR_ENV, Notifier
from jobd.supervisor.aggregate import GAUGES, Aggregator
from jobd.supervisor.notify import NotifySocket, parse
from jobd.supervisor.policy import RestartPolicy, describe_exit
from jobd.supervisor.table import ProcessTable, SlotState


def worker_text(succeeded: float, depth: float, running: float) -> str:
    registry = CollectorRegistry()
    Counter("jobd_jobs_finished_total", "Tries.", ["outcome"], registry=registry).labels(
        "succeeded"
    ).inc(succeeded)
    Gauge("jobd_queue_jobs", "Depth.", ["state"], registry=registry).labels("queued").set(depth)
    Gauge("jobd_jobs_running", "Running.", registry=registry).set(running)
    return generate_latest(registry).decode()


def values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


SUCCEEDED = ("jobd_jobs_finished_total", (("outcome", "succeeded"),))
QUEUED = ("jobd_queue_jobs", (("state", "queued"),))
RUNNING = ("jobd_jobs_running", ())


def test_counters_and_per_process_gauges_are_summed_shared_gauges_taken_once() -> None:
    aggregator = Aggregator()
    aggregator.update(101, worker_text(succeeded=3, depth=40, running=2))
    aggregator.update(102, worker_text(succeeded=5, depth=41, running=1))
    combined = values(aggregator.render([101, 102]))
    assert combined[SUCCEEDED] == 8
    assert combined[RUNNING] == 3
    assert combined[QUEUED] == 40  # the first worker's reading of the shared queue


def test_a_dead_worker_keeps_its_counts_so_sums_never_go_down() -> None:
    aggregator = Aggregator()
    aggregator.update(101, worker_text(succeeded=3, depth=40, running=2))
    aggregator.update(102, worker_text(succeeded=5, depth=40, running=1))
    aggregator.retire(101)
    aggregator.update(101, worker_text(succeeded=4, depth=40, running=2))  # a late scrape: ignored
    aggregator.update(103, worker_text(succeeded=0, depth=39, running=0))  # its replacement
    combined = values(aggregator.render([102, 103]))
    assert combined[SUCCEEDED] == 8
    assert combined[RUNNING] == 1
    assert combined[QUEUED] == 40


def test_every_gauge_of_a_worker_is_classified() -> None:
    text = Metrics().render().decode()
    gauges = {
        family.name
        for family in text_string_to_metric_families(text)
        if family.type == "gauge" and not family.name.endswith("_created")
    }
    assert gauges - set(GAUGES) == set(), "add them to jobd.supervisor.aggregate.GAUGES"


def test_restart_delays_double_to_a_cap_and_a_stable_run_starts_over() -> None:
    policy = RestartPolicy(first_delay=1.0, max_delay=30.0, stable_after=60.0, crash_loop=5)
    failures, delays = 0, []
    for _ in range(7):
        failures = policy.failures_after(failures, ran_for=2.0)
        delays.append(policy.delay(failures))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.crash_looping(failures)
    assert policy.failures_after(failures, ran_for=61.0) == 1
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "exited with code 3"


def test_a_crash_looping_or_lost_worker_is_a_problem_but_not_while_stopping() -> None:
    table = ProcessTable.of(2, crash_loop=5)
    assert table.problems() == []
    table.slots[0].failures, table.slots[0].last_exit = 5, "exited with code 1"
    table.slots[1].state = SlotState.STOPPED
    assert table.problems() == [
        "worker 1 died 5 times in a row (last: exited with code 1)",
        "worker 2 is down (stopped)",
    ]
    table.stopping = True
    assert table.problems() == []


def test_a_supervised_worker_reports_its_port_to_the_supervisor_only() -> None:
    socket = NotifySocket(None)
    received: list[dict[str, str]] = []
    try:
        alone = Notifier({"NOTIFY_SOCKET": socket.address})
        alone.http_port(1234)  # under systemd: nothing sent
        supervised = Notifier({"NOTIFY_SOCKET": socket.address, SUPERVISOR_ENV: "1"})
        supervised.http_port(4321)
        supervised.ready("running")
        socket.read(received.append)
        alone.close()
        supervised.close()
    finally:
        socket.close()
    assert received == [{HTTP_PORT_FIELD: "4321"}, {"READY": "1", "STATUS": "running"}]
    assert parse(b"READY=1\nnonsense\nSTATUS=a=b") == {"READY": "1", "STATUS": "a=b"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], 1),
        (["--processes", "3"], 3),
        (["run", "--processes", "2"], 2),
        (["--processes", "auto"], os.cpu_count() or 1),
    ],
)
def test_the_processes_option(argv: list[str], expected: int) -> None:
    assert build_parser().parse_args(argv).processes == expected


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_the_processes_option_refuses_what_is_not_a_count(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--processes", value])
    assert stop.value.code == 2
    assert "expected a number of processes or 'auto'" in capsys.readouterr().err
