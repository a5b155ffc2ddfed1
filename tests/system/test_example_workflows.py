"""The workflows example (examples/workflows) as a user runs it: the real daemon with the
example's jobs.toml (on the suite's Redis), and the pipeline's graph stored by `client.flow()`:
five fetches, a summary after all of them, and a post after the summary. The post is the exact
text the fake jobs make, and a fetch that fails for good shows both failure policies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from examples.workflows.pipeline import SOURCES, Pipeline, PipelineFailed, run, start
from jobd.client import Client, Job, JobFailed, JobInfo, JobStatus
from tests.support.daemon import REPO_ROOT, Daemon
from tests.support.examples import on_suite_redis
from tests.system.conftest import MakeDaemon

EXAMPLE = REPO_ROOT / "examples" / "workflows"
GUARD = 30.0
"""Deadline of each wait: a hang guard, not a timing assertion."""

POST = """\
[research] Summary of 5 of 5 sources:
1. Notes on alpha: Alpha in 5 short paragraphs.
2. Notes on beta: Beta in 4 short paragraphs.
3. Notes on gamma: Gamma in 5 short paragraphs.
4. Notes on delta: Delta in 5 short paragraphs.
5. Notes on epsilon: Epsilon in 7 short paragraphs."""

POST_WITHOUT_BETA = """\
[research] Summary of 4 of 5 sources, missing beta (SourceUnreachable):
1. Notes on alpha: Alpha in 5 short paragraphs.
2. Notes on gamma: Gamma in 5 short paragraphs.
3. Notes on delta: Delta in 5 short paragraphs.
4. Notes on epsilon: Epsilon in 7 short paragraphs."""


@pytest.fixture
def config(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    """The example's jobs.toml, on the suite's Redis instead of an embedded one."""
    return on_suite_redis(EXAMPLE / "jobs.toml", tmp_path, redis_url, key_prefix)


@pytest.fixture
def worker(make_daemon: MakeDaemon, config: Path) -> Daemon:
    return make_daemon(config).start().wait_running()


async def info_of(job: Job) -> JobInfo:
    info = await job.info()
    assert info is not None, f"job {job.id} is gone"
    return info


async def failure_of(job: Job) -> JobFailed:
    with pytest.raises(JobFailed) as caught:
        await job.result(timeout=GUARD)
    return caught.value


def fetch_of(pipeline: Pipeline, source: str) -> Job:
    return pipeline.fetches[pipeline.sources.index(source)]


async def test_the_pipeline_fans_out_fans_in_and_publishes_the_summary(
    worker: Daemon, config: Path
) -> None:
    assert SOURCES == ("alpha", "beta", "gamma", "delta", "epsilon")
    async with Client.from_config(config) as client:
        pipeline = await start(client, SOURCES)
        assert await pipeline.post.result(timeout=GUARD) == POST

        fetches = [await info_of(job) for job in pipeline.fetches]
        summary = await info_of(pipeline.summary)
        post = await info_of(pipeline.post)
    assert [info.status for info in [*fetches, summary, post]] == [JobStatus.SUCCEEDED] * 7
    assert summary.parents == tuple((job.queue, job.id) for job in pipeline.fetches)
    assert post.parents == ((pipeline.summary.queue, pipeline.summary.id),)
    assert summary.after_failure == "fail"
    # the fan-in: the summary started only once every fetch had ended (both times are the Redis
    # server's clock, in milliseconds: an end and a start in the same millisecond are equal)
    assert summary.started_at is not None and summary.finished_at is not None
    for fetch in fetches:
        assert fetch.finished_at is not None and fetch.finished_at <= summary.started_at
    # the chain: the post started once the summary had ended
    assert post.started_at is not None and summary.finished_at <= post.started_at


def test_the_command_prints_the_post(worker: Daemon, config: Path) -> None:
    command = [sys.executable, "-m", "examples.workflows.pipeline", "--config", str(config)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0, done.stderr
    assert done.stdout == POST + "\n"
    assert done.stderr == ""

    failed = subprocess.run(
        [*command, "--unreachable", "beta"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("nothing was published: job ")
    assert "  fetch beta: failed (SourceUnreachable: beta did not answer)\n" in failed.stderr
    assert "  summarise: failed (DependencyFailed: parent workflows " in failed.stderr


async def test_a_failed_fetch_fails_the_summary_and_the_post_under_after_failure_fail(
    worker: Daemon, config: Path
) -> None:
    async with Client.from_config(config) as client:
        pipeline = await start(client, SOURCES, unreachable={"beta"})
        beta = fetch_of(pipeline, "beta")

        summary_failed = await failure_of(pipeline.summary)
        assert summary_failed.error_type == "DependencyFailed"
        assert f"parent workflows {beta.id} failed" in summary_failed.message
        post_failed = await failure_of(pipeline.post)
        assert post_failed.error_type == "DependencyFailed"
        assert f"parent workflows {pipeline.summary.id} failed" in post_failed.message

        beta_failed = await failure_of(beta)
        assert (beta_failed.error_type, beta_failed.message) == (
            "SourceUnreachable",
            "beta did not answer",
        )
        assert (await info_of(beta)).tries == 1  # max_tries=1: failed for good on its only try
        for source in ("alpha", "gamma", "delta", "epsilon"):
            assert (await fetch_of(pipeline, source).result(timeout=GUARD))["source"] == source
        summary = await info_of(pipeline.summary)
    assert summary.status == JobStatus.FAILED
    assert summary.started_at is None  # it never ran

    # run() says so, with how each job ended
    with pytest.raises(PipelineFailed) as caught:
        await run(config, ["alpha", "beta"], unreachable=["beta"], timeout=GUARD)
    report = str(caught.value)
    assert "  fetch alpha: succeeded\n" in report
    assert "  fetch beta: failed (SourceUnreachable: beta did not answer)\n" in report
    assert "  summarise: failed (DependencyFailed: parent workflows " in report
    assert "  publish: failed (DependencyFailed: parent workflows " in report


async def test_after_failure_run_summarises_the_rest_and_names_the_failed_source(
    worker: Daemon, config: Path
) -> None:
    async with Client.from_config(config) as client:
        pipeline = await start(client, SOURCES, unreachable={"beta"}, after_failure="run")
        assert await pipeline.post.result(timeout=GUARD) == POST_WITHOUT_BETA

        assert (await failure_of(fetch_of(pipeline, "beta"))).error_type == "SourceUnreachable"
        fetches = [await info_of(job) for job in pipeline.fetches]
        summary = await info_of(pipeline.summary)
    assert summary.status == JobStatus.SUCCEEDED
    assert summary.after_failure == "run"
    assert summary.started_at is not None
    for fetch in fetches:  # the failed fetch ended too before the summary started
        assert fetch.finished_at is not None and fetch.finished_at <= summary.started_at

    post = await run(config, ["alpha", "beta"], unreachable=["beta"], after_failure="run")
    assert post == (
        "[research] Summary of 1 of 2 sources, missing beta (SourceUnreachable):\n"
        "1. Notes on alpha: Alpha in 5 short paragraphs."
    )
