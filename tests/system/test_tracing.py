"""Tracing with the real OpenTelemetry SDK: the producer's `send` span in this process (an
in-memory exporter, and a FastAPI app instrumented as an application would), and the `process`
span of each try in a real `jobd` worker process (its startup hook sets up the SDK with a file
exporter, tests/support/tracing_hooks.py). One trace from the request to every try."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobd.client import Client
from tests.support.daemon import Daemon, write_config
from tests.support.tracing_hooks import span_record
from tests.support.wait import async_wait_until
from tests.system.conftest import MakeDaemon


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    return tmp_path / "spans.jsonl"


@pytest.fixture
def traced_worker(
    tmp_path: Path, redis_url: str, key_prefix: str, make_daemon: MakeDaemon, spans_file: Path
) -> Daemon:
    config = write_config(
        tmp_path, redis_url, key_prefix,
        tracing={"enabled": True},
        hooks={"startup": "tests.support.tracing_hooks:startup"},
        cron=[{"name": "tick", "function": "echo", "schedule": "* * * * * *"}],
        defaults={"retry": {"base": "10ms", "max": "50ms", "jitter": False}},
    )  # fmt: skip
    return (
        make_daemon(config, "--log-format", "json", env={"JOBD_TEST_SPANS": str(spans_file)})
        .start()
        .wait_running()
    )


@pytest.fixture
def producer_spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def processed(path: Path, job_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The worker's `process` spans of `job_id`, once there are `count` of them."""

    def spans() -> list[dict[str, Any]]:
        return [
            s for s in worker_spans(path) if s["attributes"].get("messaging.message.id") == job_id
        ]

    await async_wait_until(lambda: len(spans()) >= count, message=f"{count} spans of {job_id}")
    return spans()


async def test_a_request_and_the_job_it_enqueued_are_one_trace(
    redis_url: str,
    key_prefix: str,
    traced_worker: Daemon,
    spans_file: Path,
    producer_spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = producer_spans
    app = FastAPI()
    jobs = Client(redis_url, key_prefix=key_prefix, tracer_provider=provider)

    @app.post("/echo")
    async def echo() -> dict[str, str]:
        job = await jobs.enqueue("echo", "traced")
        return {"job_id": job.id}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            job_id = (await http.post("/echo")).json()["job_id"]
        (process,) = await processed(spans_file, job_id)
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
        await jobs.close()
    local = [span_record(span) for span in exporter.get_finished_spans()]
    (send,) = [s for s in local if s["name"] == "send default"]
    (request,) = [s for s in local if s["kind"] == "SERVER"]
    # one trace: request -> send (producer) -> process (consumer), and the consumer links the send
    assert send["trace_id"] == request["trace_id"] == process["trace_id"]
    assert send["parent_id"] == request["span_id"]
    assert process["parent_id"] == send["span_id"]
    assert [link["span_id"] for link in process["links"]] == [send["span_id"]]
    assert send["kind"] == "PRODUCER" and process["kind"] == "CONSUMER"
    assert process["name"] == "process default"
    assert send["attributes"] == {
        "messaging.system": "jobd", "messaging.destination.name": "default",
        "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.message.id": job_id, "jobd.function": "echo",
    }  # fmt: skip
    attributes = process["attributes"]
    assert attributes["messaging.system"] == "jobd" and attributes["jobd.try"] == 1
    assert attributes["jobd.outcome"] == "succeeded" and attributes["jobd.queue_wait_ms"] >= 0
    assert process["status"] == "UNSET"


async def test_each_try_is_a_span_of_the_same_trace_with_its_error_and_retry(
    redis_url: str,
    key_prefix: str,
    traced_worker: Daemon,
    spans_file: Path,
    producer_spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = producer_spans
    async with Client(redis_url, key_prefix=key_prefix, tracer_provider=provider) as jobs:
        job = await jobs.enqueue("fail_until", 2)
        first, second = sorted(
            await processed(spans_file, job.id, 2), key=lambda s: s["attributes"]["jobd.try"]
        )
    (send,) = [span_record(s) for s in exporter.get_finished_spans()]
    assert first["trace_id"] == second["trace_id"] == send["trace_id"]
    assert first["parent_id"] == second["parent_id"] == send["span_id"]
    assert first["attributes"]["jobd.outcome"] == "retried"
    assert [event["name"] for event in first["events"]] == ["exception", "retry"]
    assert first["events"][0]["attributes"]["exception.type"] == "RuntimeError"
    assert second["attributes"]["jobd.outcome"] == "succeeded" and second["events"] == []


async def test_a_failed_job_and_a_workflow_child_and_log_lines(
    redis_url: str,
    key_prefix: str,
    traced_worker: Daemon,
    spans_file: Path,
    producer_spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = producer_spans
    async with Client(redis_url, key_prefix=key_prefix, tracer_provider=provider) as jobs:
        broken = await jobs.enqueue("fail", "no", max_tries=1)
        parent = await jobs.enqueue("echo", "p")
        child = await jobs.enqueue("echo", "c", after=[parent])
        (failed,) = await processed(spans_file, broken.id)
        (parent_span,) = await processed(spans_file, parent.id)
        (child_span,) = await processed(spans_file, child.id)
    assert failed["status"] == "ERROR" and failed["attributes"]["jobd.outcome"] == "failed"
    parents = [
        link for link in child_span["links"] if link["attributes"] == {"jobd.link": "parent"}
    ]
    assert [link["span_id"] for link in parents] == [parent_span["span_id"]]
    # the worker's JSON log lines of a try carry the ids of its span (lines are written in
    # batches: wait for the try's last one)

    def of_child() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in traced_worker.log_text().splitlines()]
        return [line for line in lines if line.get("job_id") == child.id]

    await async_wait_until(
        lambda: any(line.get("event") == "job_finished" for line in of_child()),
        message="the child's log lines",
    )
    assert all(
        (line["trace_id"], line["span_id"]) == (child_span["trace_id"], child_span["span_id"])
        for line in of_child()
    )


async def test_a_cron_tick_starts_a_trace_of_its_own(
    traced_worker: Daemon, spans_file: Path
) -> None:
    def ticks() -> list[dict[str, Any]]:
        return [
            s for s in worker_spans(spans_file)
            if str(s["attributes"].get("messaging.message.id", "")).startswith("cron:tick:")
        ]  # fmt: skip

    await async_wait_until(lambda: ticks(), timeout=30, message="a cron tick's span")
    tick = ticks()[0]
    assert tick["parent_id"] is None and tick["links"] == []
    assert tick["name"] == "process default" and tick["attributes"]["jobd.outcome"] == "succeeded"


def test_jobd_imports_no_tracing_when_it_is_off(redis_url: str) -> None:
    """With tracing=False the producer makes no span and injects nothing (OpenTelemetry's
    propagators stay unloaded; redis-py 8 itself loads OpenTelemetry's metrics and trace API
    where it is installed: that part is not jobd's), and a worker without [tracing] never loads
    jobd.worker.tracing."""
    code = (
        "import sys, asyncio\n"
        "from jobd.client import Client\n"
        "async def main():\n"
        f"    async with Client({redis_url!r}, key_prefix='off', tracing=False) as jobs:\n"
        "        await jobs.enqueue('echo', 1)\n"
        "asyncio.run(main())\n"
        "import jobd.worker.lifecycle\n"
        "print(sorted(m for m in sys.modules if m.startswith(\n"
        "    ('opentelemetry.propagate', 'jobd.worker.tracing'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
