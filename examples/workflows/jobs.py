"""The example's jobs: an agent-style pipeline that fetches sources, summarises what it fetched,
and publishes the summary (examples/workflows/pipeline.py builds the graph). Deterministic and
offline: a source's "document" follows from its name alone, so a test can check the exact text.

- `fetch(source)` returns the source's document; `unreachable=True` makes it fail, to show what
  `after_failure` does to the jobs that wait for it.
- `summarise(sources)` runs after every fetch and reads their results with
  `jobd.current_job().parent_results()`. Under `after_failure="run"` a failed fetch shows up there
  as a `jobd.JobFailed`, and the summary names the source it missed.
- `publish(channel)` runs after the summary and returns the text as it would be posted.
"""

from __future__ import annotations

from typing import Any

import jobd


class SourceUnreachable(Exception):
    """The source could not be fetched (here: on demand, with `unreachable=True`)."""


def document(source: str) -> dict[str, str]:
    """The fake document of `source`: the same every time, for any name."""
    return {
        "source": source,
        "title": f"Notes on {source}",
        "text": f"{source.capitalize()} in {len(source)} short paragraphs.",
    }


async def fetch(source: str, unreachable: bool = False) -> dict[str, str]:
    """Fetch `source` (a fake, offline fetch); SourceUnreachable when `unreachable`."""
    if unreachable:
        raise SourceUnreachable(f"{source} did not answer")
    return document(source)


async def summarise(sources: dict[str, str]) -> str:
    """A summary of the documents the parents fetched, in the order of the parents.

    `sources` maps each fetch job's id to its source name: the producer knows both, and a parent
    that failed comes back as a JobFailed, which carries the job's id and error but not its
    arguments."""
    results: dict[str, Any] = await jobd.current_job().parent_results()
    lines: list[str] = []
    missing: list[str] = []
    for job_id, result in results.items():
        if isinstance(result, Exception):  # JobFailed, or JobAborted (after_failure="run" only)
            error = getattr(result, "error_type", type(result).__name__)
            missing.append(f"{sources.get(job_id, job_id)} ({error})")
        else:
            lines.append(f"{len(lines) + 1}. {result['title']}: {result['text']}")
    head = f"Summary of {len(lines)} of {len(results)} sources"
    if missing:
        head += f", missing {', '.join(missing)}"
    return "\n".join([f"{head}:", *lines])


async def publish(channel: str) -> str:
    """Post the summary (the one parent's result) to `channel`; returns the post."""
    (summary,) = (await jobd.current_job().parent_results()).values()
    return f"[{channel}] {summary}"
