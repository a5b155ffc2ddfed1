"""Run the workflows example: fetch every source in parallel (fan-out), summarise them once all
fetches have ended (fan-in), then publish the summary (a chain). The whole graph is stored at once
with `client.flow()`, so no job of it starts before all of it is in Redis.

    jobd --config examples/workflows/jobs.toml                 # the worker, first
    python -m examples.workflows.pipeline                      # in a second terminal
    python -m examples.workflows.pipeline --unreachable beta   # a fetch fails: nothing published
    python -m examples.workflows.pipeline --unreachable beta --after-failure run

Prints the published text, or, when a job of the graph failed, how each job ended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobd.client import Client, Job, JobFailed, RedisUnavailable

HERE = Path(__file__).resolve().parent
SOURCES = ("alpha", "beta", "gamma", "delta", "epsilon")
CHANNEL = "research"


@dataclass(frozen=True)
class Pipeline:
    """The handles of one pipeline's jobs."""

    sources: tuple[str, ...]
    fetches: tuple[Job, ...]
    summary: Job
    post: Job

    async def report(self) -> str:
        """How each job ended (or where it stands), one line each."""
        named = [*(f"fetch {s}" for s in self.sources), "summarise", "publish"]
        lines = []
        for name, job in zip(named, [*self.fetches, self.summary, self.post], strict=True):
            info = await job.info()
            if info is None:
                lines.append(f"  {name}: not found")
                continue
            error = f" ({info.error.type}: {info.error.message})" if info.error else ""
            lines.append(f"  {name}: {info.status}{error}")
        return "\n".join(lines)


async def start(
    client: Client,
    sources: Sequence[str],
    *,
    unreachable: Collection[str] = (),
    after_failure: str = "fail",
    channel: str = CHANNEL,
) -> Pipeline:
    """Store the pipeline's graph in one go and return its handles. A source in `unreachable`
    fails on its only try; `after_failure` is the summary's policy towards failed fetches."""
    async with client.flow() as flow:
        fetches = [
            flow.enqueue("fetch", source, unreachable=True, max_tries=1)
            if source in unreachable
            else flow.enqueue("fetch", source)
            for source in sources
        ]
        names = {job.id: source for job, source in zip(fetches, sources, strict=True)}
        summary = flow.enqueue("summarise", names, after=fetches, after_failure=after_failure)
        post = flow.enqueue("publish", channel, after=[summary])
    return Pipeline(tuple(sources), tuple(fetches), summary, post)


class PipelineFailed(Exception):
    """The published post never came: a job of the graph failed. The message says how each
    job ended."""


async def run(
    config_path: str | os.PathLike[str],
    sources: Sequence[str] = SOURCES,
    *,
    unreachable: Collection[str] = (),
    after_failure: str = "fail",
    timeout: float = 60.0,
) -> str:
    """Run the pipeline against the worker of `config_path` and return the published text;
    PipelineFailed if it was not published."""
    async with Client.from_config(config_path) as client:
        pipeline = await start(
            client, sources, unreachable=unreachable, after_failure=after_failure
        )
        try:
            post: str = await pipeline.post.result(timeout=timeout)
        except JobFailed as error:
            raise PipelineFailed(f"{error}\n{await pipeline.report()}") from error
        return post


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", default=list(SOURCES), help="names to fetch")
    parser.add_argument("--config", default=str(HERE / "jobs.toml"), help="the worker's jobs.toml")
    parser.add_argument(
        "--unreachable",
        action="append",
        default=[],
        metavar="SOURCE",
        help="a source whose fetch fails on its only try (repeatable)",
    )
    parser.add_argument(
        "--after-failure",
        choices=["fail", "run"],
        default="fail",
        help="what the summary does when a fetch failed (default: fail)",
    )
    arguments = parser.parse_args(argv)
    pipeline = run(
        arguments.config,
        arguments.sources,
        unreachable=arguments.unreachable,
        after_failure=arguments.after_failure,
    )
    try:
        post = asyncio.run(pipeline)
    except RedisUnavailable as error:
        sys.exit(str(error))  # it says to start the worker first
    except PipelineFailed as error:
        sys.exit(f"nothing was published: {error}")
    print(post)


if __name__ == "__main__":
    main()
