"""The script calls of workflows that both the producer and the worker make (docs/workflows.md):
edges, the calls that lift or discard the gate of a flow held over several queues (Redis
Cluster), and the detach calls of discarded jobs. Pure: callers run the calls."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from jobd.redis.keys import QueueKeys, member_text

GATE_MS = 60_000
"""A flow over several queues on Redis Cluster that is still held this long after it was stored
was abandoned by its producer: a worker discards it (jobd.worker.flows)."""
FLOW_KEY_MS = 86_400_000
"""How long the fate of such a flow ("committed", "abandoned") is kept."""

Calls = list[tuple[list[str], list[Any]]]


def edge(queue: str, job_id: str) -> str:
    """A job as a member of waits and dependants sets: "<queue> <id>"."""
    return f"{queue} {job_id}"


def parse_edge(member: bytes | str) -> tuple[str, str]:
    queue, _, job_id = member_text(member).partition(" ")
    return queue, job_id


def flow_key(prefix: str, gate: str) -> str:
    """The key that holds the fate of the flow held by `gate` (a slot of its own)."""
    return f"{prefix}:flow:{{{gate}}}"


def gate_calls(prefix: str, gate: str, jobs: Iterable[tuple[str, str]], mode: str) -> Calls:
    """ungate.lua calls ('release' or 'discard') for the (queue, id) of held jobs."""
    calls: Calls = []
    for queue, job_id in jobs:
        keys = QueueKeys(prefix, queue)
        calls.append(([keys.job(job_id), keys.waits(job_id)], [job_id, gate, mode]))
    return calls


def detach_discarded(prefix: str, jobs: Sequence[tuple[str, str]], replies: Sequence[Any]) -> Calls:
    """detach.lua calls that take discarded jobs (ungate.lua's replies) off their parents."""
    calls: Calls = []
    for (queue, job_id), reply in zip(jobs, replies, strict=True):
        if isinstance(reply, list) and reply[0] == b"discarded" and reply[1]:
            for parent_queue, parent_id in json.loads(reply[1]):
                keys = QueueKeys(prefix, parent_queue)
                calls.append(
                    (
                        [keys.job(parent_id), keys.dependants(parent_id)],
                        [parent_id, edge(queue, job_id)],
                    )
                )
    return calls


def parents_of(value: bytes | str | None) -> list[tuple[str, str]]:
    """The parents a job's 'parents' field lists, as (queue, id)."""
    if not value:
        return []
    try:
        return [(str(queue), str(job_id)) for queue, job_id in json.loads(value)]
    except (ValueError, TypeError):
        return []
