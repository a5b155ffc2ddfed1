"""Jobs that wait for other jobs: `enqueue(..., after=[...])` and `client.flow()`, which stores a
graph of jobs all at once (flow.lua). See docs/workflows.md.

A parent is named by a job handle (of any queue) or by the id of a job of the child's own queue.
The graph goes to Redis as one script call, every parent before its children, so that no job of
it starts before the whole graph is stored, and an error stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobd.client.operations import (
    EnqueueOptions,
    JobRef,
    Operation,
    ScriptCall,
    check_function,
    enqueue_options,
    new_job_id,
)
from jobd.errors import InvalidJobOption, NotReplicated
from jobd.model import check_job_id, encode_payload
from jobd.redis.keys import QueueKeys
from jobd.serializer import Serializer
from jobd.signing import sign

AFTER_FAILURE = ("fail", "run")


class HasRef(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def queue(self) -> str: ...


@dataclass(frozen=True, slots=True)
class GraphJob:
    """One job of a graph, ready for flow.lua."""

    ref: JobRef
    function: str
    payload: bytes
    signature: bytes
    options: EnqueueOptions
    after_failure: str
    parents: tuple[tuple[str, str], ...]

    def row(self) -> list[Any]:
        options = self.options

        def blank(value: int | None) -> Any:
            return "" if value is None else value

        return [
            self.ref.queue, self.ref.id, self.function, self.payload.decode(),
            self.signature.decode(), options.priority, blank(options.max_tries),
            blank(options.timeout_ms), blank(options.delay_ms), blank(options.at_ms),
            blank(options.expires_ms), options.group or "", blank(options.cost),
            self.after_failure, [list(parent) for parent in self.parents],
        ]  # fmt: skip


def check_after_failure(value: object) -> str:
    if value not in AFTER_FAILURE:
        raise InvalidJobOption(f'after_failure must be "fail" or "run", got {value!r}')
    return str(value)


def parent_edges(after: Iterable[HasRef | str], queue: str) -> tuple[tuple[str, str], ...]:
    """(queue, id) of each parent in `after`: job handles, or ids of jobs of `queue`."""
    if isinstance(after, (str, bytes)) or not isinstance(after, Iterable):
        raise InvalidJobOption(
            f"after must be a list of jobs (handles, or ids of jobs in queue {queue!r}), "
            f"got {after!r}"
        )
    edges: dict[tuple[str, str], None] = {}
    for parent in after:
        if isinstance(parent, str):
            edges[(queue, check_job_id(parent, "after"))] = None
        elif isinstance(getattr(parent, "id", None), str) and isinstance(
            getattr(parent, "queue", None), str
        ):
            edges[(parent.queue, parent.id)] = None
        else:
            raise InvalidJobOption(
                f"after: {parent!r} is not a job: pass the Job handles enqueue returned, or ids "
                f"of jobs in queue {queue!r}"
            )
    return tuple(edges)


def graph_job(
    options: EnqueueOptions,
    call: tuple[str, tuple[Any, ...], dict[str, Any]],
    job_id: str | None,
    parents: tuple[tuple[str, str], ...],
    after_failure: str,
    serializer: Serializer,
    signing_key: bytes | None,
) -> GraphJob:
    """Check and encode one job of a graph (nothing is sent)."""
    function, args, kwargs = call
    name = check_function(function)
    ref = JobRef(check_job_id(job_id) if job_id is not None else new_job_id(), options.queue)
    if (ref.queue, ref.id) in parents:
        raise InvalidJobOption(f"job {ref.id} cannot wait for itself")
    payload = encode_payload(serializer, args, kwargs)
    signature = sign(signing_key, ref.id, ref.queue, name, payload) if signing_key else b""
    return GraphJob(ref, name, payload, signature, options, after_failure, parents)


def check_one_slot(jobs: Sequence[GraphJob]) -> None:
    """On Redis Cluster a script reaches one hash slot: one queue per graph, parents included."""
    queues = {job.ref.queue for job in jobs} | {q for job in jobs for q, _ in job.parents}
    if len(queues) > 1:
        raise InvalidJobOption(
            f"on Redis Cluster, the jobs of one flow and their parents must share a queue (got "
            f"{', '.join(sorted(queues))}): a queue lives in one hash slot, and the graph is "
            "stored by one script"
        )


def store_graph(prefix: str, jobs: Sequence[GraphJob], *, cluster: bool = False) -> Operation:
    """Store the graph in one flow.lua call; returns the JobRefs (created or deduplicated)."""
    if cluster:
        check_one_slot(jobs)
    keys = [QueueKeys(prefix, job.ref.queue).job(job.ref.id) for job in jobs]
    graph = json.dumps([job.row() for job in jobs], ensure_ascii=False, separators=(",", ":"))
    try:
        reply = yield ScriptCall("flow", keys, [prefix, graph], durable=True)
    except NotReplicated as error:
        ids = [job.ref.id for job in jobs]
        raise NotReplicated(f"{error}; job ids: {', '.join(ids)}", ids) from None
    if reply[0] == b"missing":
        queue, job_id = reply[1].decode(), reply[2].decode()
        raise InvalidJobOption(
            f"after: job {job_id} not found in queue {queue!r} (it never existed, or its "
            "result expired); nothing was enqueued"
        )
    return [
        JobRef(job.ref.id, job.ref.queue, created=bool(reply[1 + 2 * index]))
        for index, job in enumerate(jobs)
    ]


class Flow:
    """A graph of jobs built with `enqueue` and stored all at once (`Client.flow()`,
    `SyncClient.flow()`): every job or none, and none starts before all are stored."""

    def __init__(self, producer: Any, handle_type: Any) -> None:
        self._producer = producer
        self._handle_type = handle_type
        self._jobs: list[GraphJob] = []
        self._handles: list[Any] = []
        self._ids: set[tuple[str, str]] = set()

    def enqueue(
        self,
        function: str,
        /,
        *args: Any,
        queue: str | None = None,
        job_id: str | None = None,
        after: Iterable[HasRef | str] | None = None,
        after_failure: str = "fail",
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int = 0,
        max_tries: int | None = None,
        timeout: float | timedelta | None = None,
        expires: float | timedelta | None = None,
        group: str | None = None,
        cost: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Add a job to the flow (stored when the flow's block ends); returns its handle, which
        later jobs of the flow may name in `after`. The options are those of `Client.enqueue`."""
        producer = self._producer
        options = enqueue_options(
            queue=queue or producer.default_queue, delay=delay, at=at, priority=priority,
            max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
        )  # fmt: skip
        job = graph_job(
            options, (function, args, kwargs), job_id, parent_edges(after or (), options.queue),
            check_after_failure(after_failure), producer.serializer, producer.signing_key,
        )  # fmt: skip
        edge = (job.ref.queue, job.ref.id)
        if edge in self._ids:
            raise InvalidJobOption(f"job {job.ref.id} is in this flow twice")
        self._ids.add(edge)
        self._jobs.append(job)
        handle = self._handle_type(producer, job.ref)
        self._handles.append(handle)
        return handle

    def operation(self) -> Operation:
        return store_graph(self._producer.key_prefix, self._jobs, cluster=self._producer.cluster)

    def stored(self, refs: Sequence[JobRef]) -> None:
        """Give the handles what storing found (`created`)."""
        for handle, ref in zip(self._handles, refs, strict=True):
            handle._ref = ref
