"""The deployment files against a running daemon: the metrics the alerts, dashboard and autoscaler
query are what `/metrics` serves, and the probes and the container's HEALTHCHECK get the answers
they expect.

One daemon for the module (the real `jobd` subprocess, against the session redis-server) runs a job
that succeeds and one that fails for good, so that the labelled series exist before the scrape.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobd.client import SyncClient
from jobd.model import JobStatus
from tests.support.daemon import Daemon, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until
from tests.unit.test_deploy import (
    TARGET_LABELS,
    container,
    declared_labels,
    expressions,
    healthcheck_argv,
    manifests,
    parse_containerfile,
    registry_samples,
    sample_names,
)

GUARD = 30.0
"""Deadline of every wait: a hang guard, not a timing assertion."""


@dataclass(frozen=True)
class Scrape:
    families: dict[str, str]
    """Family name -> type, as served."""
    labels: dict[str, set[str]]
    """Sample name -> label names seen on its samples."""

    def sample_names(self) -> set[str]:
        return set().union(*(sample_names(name, kind) for name, kind in self.families.items()))


def parse_scrape(text: str) -> Scrape:
    families: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created") and family.name.removesuffix("_created") in families:
            continue  # prometheus_client's parser reports counter_created lines as a family
        families[family.name] = family.type
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return Scrape(families, labels)


@pytest.fixture(scope="module")
def daemon(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A running worker that has run one job that succeeded and one that failed for good."""
    tmp_path = tmp_path_factory.mktemp("deploy-live")
    prefix = "t" + uuid.uuid4().hex[:10]
    config = write_config(tmp_path, redis_server.url, prefix)
    with Daemon(config, ledger_url=redis_server.url, log_dir=tmp_path) as worker:
        worker.wait_running()
        with SyncClient(redis_server.url, key_prefix=prefix) as jobs:
            done = jobs.enqueue("echo", 1)
            failed = jobs.enqueue("fail", "for the dead letters", max_tries=1)
            for job, status in ((done, JobStatus.SUCCEEDED), (failed, JobStatus.FAILED)):
                wait_until(lambda job=job, status=status: job.status() == status, GUARD, 0.02)

        def counted() -> bool:
            text = worker.get("/metrics")[1].decode()
            return "jobd_jobs_dead_lettered_total{" in text and 'outcome="succeeded"' in text

        wait_until(counted, GUARD, 0.05, message="both jobs counted in /metrics")
        yield worker
        print(worker.log_text())  # shown when a test failed


@pytest.fixture(scope="module")
def scrape(daemon: Daemon) -> Scrape:
    status, body = daemon.get("/metrics")
    assert status == 200
    return parse_scrape(body.decode())


def test_every_metric_the_deployment_queries_is_served(scrape: Scrape) -> None:
    served = scrape.sample_names()
    for expression in expressions():
        missing = expression.metric_names() - served
        assert not missing, f"{expression.where}: not served by jobd: {sorted(missing)}"


def test_the_served_metrics_are_the_registry_the_unit_tests_check(scrape: Scrape) -> None:
    # The unit tests compare the files with jobd.ops.metrics.Metrics; the daemon must serve just that.
    assert scrape.sample_names() == set(registry_samples())


def test_labels_the_deployment_queries_are_on_the_served_series(scrape: Scrape) -> None:
    declared = declared_labels()
    families = registry_samples()
    for name, labels in scrape.labels.items():
        if name in families:  # served labels are the declared ones (plus le on buckets)
            assert labels - {"le"} <= declared.get(families[name], labels), name
    for expression in expressions():
        allowed = set(TARGET_LABELS)
        for name in expression.metric_names():
            allowed |= scrape.labels.get(name, set())
            allowed |= declared.get(families[name], set())  # series not created in this run
        unknown = expression.label_names() - allowed
        assert not unknown, f"{expression.where}: {sorted(unknown)} on no served series"
    # The series the alerts filter on exist with the labels they filter by.
    assert {"queue", "function", "outcome"} <= scrape.labels["jobd_jobs_finished_total"]
    assert {"queue", "state"} <= scrape.labels["jobd_queue_jobs"]
    assert {"queue", "le"} <= scrape.labels["jobd_job_queue_wait_seconds_bucket"]
    assert {"queue", "function", "reason"} <= scrape.labels["jobd_jobs_dead_lettered_total"]
    # A worker that never saw a Redis error serves the series the Redis-errors alert rates.
    assert scrape.labels["jobd_redis_errors_total"] == {"error"}


def test_the_probes_get_their_answers_from_the_running_daemon(daemon: Daemon) -> None:
    kinds = manifests()
    jobd = container(kinds["Deployment"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = jobd[probe]["httpGet"]["path"]
        assert daemon.get(path)[0] == 200, (probe, path)
    (endpoint,) = kinds["ServiceMonitor"]["spec"]["endpoints"]
    status, headers, _ = daemon.http("GET", endpoint["path"])
    assert status == 200 and headers["Content-Type"].startswith("text/plain")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_container_healthcheck_command_passes_and_fails(daemon: Daemon) -> None:
    argv = healthcheck_argv(parse_containerfile()[-1])
    assert argv[0] == "python"
    host, port = daemon.http_address()
    address = re.compile(r"127\.0\.0\.1:\d+")
    healthy = address.sub(f"{host}:{port}", argv[2])
    nobody = address.sub(f"127.0.0.1:{_free_port()}", argv[2])
    assert (
        subprocess.run([sys.executable, "-c", healthy], capture_output=True, timeout=30).returncode
        == 0
    )
    failed = subprocess.run([sys.executable, "-c", nobody], capture_output=True, timeout=30)
    assert failed.returncode != 0
