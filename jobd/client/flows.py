"""Jobs that wait for other jobs: `enqueue(..., after=[...])` and `client.flow()`, which stores a
graph of jobs all at once (flow.lua). See docs/workflows.md.

A parent is named by a job handle (of any queue) or by the id of a job of the child's own queue.
The graph goes to Redis as one script call, every parent before its children, so that no job of
it starts before the whole graph is stored, and an error stores nothing. On Redis Cluster a graph
over several queues is stored held, then released (`_store_held`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from jobd import crypto
from jobd.client import tracing
from jobd.client.operations import (
    Command,
    EnqueueOptions,
    JobRef,
    Operation,
    ScriptBatch,
    ScriptCall,
    check_function,
    enqueue_options,
    new_job_id,
)
from jobd.errors import InvalidJobOption, NotReplicated, RedisUnavailable
from jobd.model import check_job_id, encode_payload
from jobd.redis.graph import FLOW_KEY_MS, GATE_MS, detach_discarded, edge, flow_key, gate_calls
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
    options: EnqueueOptions
    after_failure: str
    parents: tuple[tuple[str, str], ...]

    def row(self, headers: bytes, signing_key: bytes | None) -> list[Any]:
        """The job as flow.lua takes it, carrying `headers` and signed with them."""
        options = self.options
        ref = self.ref
        signature = (
            sign(signing_key, ref.id, ref.queue, self.function, self.payload, headers)
            if signing_key
            else b""
        )

        def blank(value: int | None) -> Any:
            return "" if value is None else value

        return [
            ref.queue, ref.id, self.function, self.payload.decode(), signature.decode(),
            options.priority, blank(options.max_tries), blank(options.timeout_ms),
            blank(options.delay_ms), blank(options.at_ms), blank(options.expires_ms),
            options.group or "", blank(options.cost), self.after_failure,
            [list(parent) for parent in self.parents], headers.decode(),
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
    keys: crypto.Keys | None = None,
) -> GraphJob:
    """Check and encode one job of a graph (nothing is sent); with `keys`, its payload is
    encrypted for it (and signed as stored, when the graph is signed)."""
    function, args, kwargs = call
    name = check_function(function)
    ref = JobRef(check_job_id(job_id) if job_id is not None else new_job_id(), options.queue)
    if (ref.queue, ref.id) in parents:
        raise InvalidJobOption(f"job {ref.id} cannot wait for itself")
    payload = encode_payload(serializer, args, kwargs)
    if keys is not None:
        payload = keys.encrypt(
            payload, job_id=ref.id, queue=ref.queue, function=name, part=crypto.PAYLOAD
        )
    return GraphJob(ref, name, payload, options, after_failure, parents)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every job of one store carries: the trace headers, signed with the key."""

    headers: bytes = b""
    signing_key: bytes | None = None


def _rows(jobs: Sequence[GraphJob], stamp: Stamp) -> str:
    rows = [job.row(stamp.headers, stamp.signing_key) for job in jobs]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _missing(reply: list[Any]) -> InvalidJobOption:
    queue, job_id = reply[1].decode(), reply[2].decode()
    return InvalidJobOption(
        f"after: job {job_id} not found in queue {queue!r} (it never existed, or its result "
        "expired); nothing was enqueued"
    )


def store_graph(
    prefix: str,
    jobs: Sequence[GraphJob],
    *,
    cluster: bool = False,
    signing_key: bytes | None = None,
    tracer: Any = None,
) -> Operation:
    """Store the graph; returns the JobRefs (created or deduplicated). One flow.lua call, except
    on Redis Cluster for a graph over several queues (see `_store_held`). With `tracer`, the
    whole graph is one `send` span (jobd.client.tracing)."""
    send = None
    if tracer is not None:
        queue = ",".join(sorted({job.ref.queue for job in jobs}))
        ids = [job.ref.id for job in jobs]
        send = tracing.start_send(tracer, queue, ids, [job.function for job in jobs])
    stamp = Stamp(send.headers if send is not None else b"", signing_key)
    try:
        refs: list[JobRef] = yield from _store(prefix, jobs, stamp, cluster)
    except Exception as error:
        tracing.end_send(send, error)
        raise
    tracing.end_send(send)
    return refs


def _store(prefix: str, jobs: Sequence[GraphJob], stamp: Stamp, cluster: bool) -> Operation:
    queues = {job.ref.queue for job in jobs} | {q for job in jobs for q, _ in job.parents}
    edges = sum(len(job.parents) for job in jobs)
    if (cluster and len(queues) > 1) or len(jobs) > PART or edges > PART:
        refs: list[JobRef] = yield from _store_held(prefix, jobs, stamp)
        return refs
    keys = [QueueKeys(prefix, job.ref.queue).job(job.ref.id) for job in jobs]
    try:
        reply = yield ScriptCall("flow", keys, [prefix, _rows(jobs, stamp), "", "0"], durable=True)
    except NotReplicated as error:
        ids = [job.ref.id for job in jobs]
        raise NotReplicated(f"{error}; job ids: {', '.join(ids)}", ids) from None
    if reply[0] == b"missing":
        raise _missing(reply)
    return [
        JobRef(job.ref.id, job.ref.queue, created=bool(reply[1 + 2 * index]))
        for index, job in enumerate(jobs)
    ]


PART = 250
"""Jobs per flow.lua call, and calls per pipeline, of a graph stored in parts."""


def _store_held(prefix: str, jobs: Sequence[GraphJob], stamp: Stamp) -> Operation:
    """A graph in parts: over several queues on Redis Cluster (one script reaches one queue), or
    larger than PART jobs or edges anywhere (one script for all of it would hold Redis for
    long). Each part (one queue, at most PART jobs) is stored held by a gate, so no job can
    start; the links are made, PART per pipeline (link.lua); the flow is committed (a key of its
    own, SET NX); only then the gate is lifted. Any failure before the commit discards what was
    stored; a producer that dies half way leaves a held flow that a worker discards after
    GATE_MS (jobd.worker.flows). Every job or none, and no Redis call is long."""
    gate = new_job_id()
    shares: dict[str, list[GraphJob]] = {}
    for job in jobs:
        shares.setdefault(job.ref.queue, []).append(job)
    created: dict[tuple[str, str], GraphJob] = {}
    try:
        for queue, share in shares.items():
            for first in range(0, len(share), PART):
                part = share[first : first + PART]
                keys = [QueueKeys(prefix, queue).job(job.ref.id) for job in part]
                reply = yield ScriptCall(
                    "flow", keys, [prefix, _rows(part, stamp), gate, "1"], durable=True
                )
                for index, job in enumerate(part):
                    if reply[1 + 2 * index]:
                        created[(job.ref.queue, job.ref.id)] = job
        yield from _wait_for_parents(prefix, list(created.values()))
        yield from _link_across(prefix, list(created.values()))
        fate = yield Command(("SET", flow_key(prefix, gate), "committed", "NX", "PX", FLOW_KEY_MS))
        if fate is None:
            raise RedisUnavailable(
                f"the flow took longer than {GATE_MS / 1000:g} s to store and a worker discarded "
                "it; nothing was enqueued: enqueue it again"
            )
    except Exception:
        yield from discard(prefix, gate, [job.ref for job in created.values()])
        raise
    released = gate_calls(prefix, gate, list(created), "release")
    for first in range(0, len(released), PART):
        yield ScriptBatch("ungate", released[first : first + PART])
    return [
        JobRef(job.ref.id, job.ref.queue, created=(job.ref.queue, job.ref.id) in created)
        for job in jobs
    ]


def _wait_for_parents(prefix: str, jobs: Sequence[GraphJob]) -> Operation:
    """Add each new job's parents to its waits, PART per call and PART calls per pipeline,
    before they are linked (see wait.lua)."""
    calls: list[tuple[list[str], list[Any]]] = []
    for job in jobs:
        edges = [edge(queue, parent_id) for queue, parent_id in job.parents]
        waits = QueueKeys(prefix, job.ref.queue).waits(job.ref.id)
        calls += [([waits], edges[first : first + PART]) for first in range(0, len(edges), PART)]
    for first in range(0, len(calls), PART):
        replies = yield ScriptBatch("wait", calls[first : first + PART])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply  # nothing is linked yet: the flow is discarded
    return None


def _link_across(prefix: str, jobs: Sequence[GraphJob]) -> Operation:
    """Link each new job to its parents, PART per pipeline; a parent that ended already counts
    at once (resolve.lua). InvalidJobOption for a parent that does not exist."""
    edges = [(job, parent) for job in jobs for parent in job.parents]
    if not edges:
        return None
    calls = []
    for job, (queue, parent_id) in edges:
        keys = QueueKeys(prefix, queue)
        calls.append(([keys.job(parent_id), keys.dependants(parent_id)], [_edge(job.ref)]))
    replies = []
    for first in range(0, len(calls), PART):
        replies += yield ScriptBatch("link", calls[first : first + PART])
    resolved = []
    for (job, (queue, parent_id)), status in zip(edges, replies, strict=True):
        if isinstance(status, Exception):
            raise status
        if status is None:
            raise _missing([b"missing", queue.encode(), parent_id.encode()])
        if status in (b"succeeded", b"failed", b"aborted"):
            keys = QueueKeys(prefix, job.ref.queue)
            resolved.append(
                (
                    [keys.job(job.ref.id), keys.waits(job.ref.id)],
                    [job.ref.id, f"{queue} {parent_id}", status.decode()],
                )
            )
    for first in range(0, len(resolved), PART):
        yield ScriptBatch("resolve", resolved[first : first + PART])
    return None


def _edge(ref: JobRef) -> str:
    return edge(ref.queue, ref.id)


def discard(prefix: str, gate: str, refs: Sequence[JobRef]) -> Operation:
    """Delete the held jobs of a flow that was never committed, and take them off their
    parents."""
    jobs = [(ref.queue, ref.id) for ref in refs]
    if not jobs:
        return None
    replies = yield ScriptBatch("ungate", gate_calls(prefix, gate, jobs, "discard"))
    detach = detach_discarded(prefix, jobs, replies)
    if detach:
        yield ScriptBatch("detach", detach)
    return None


HandleType = TypeVar("HandleType")


class Flow(Generic[HandleType]):
    """A graph of jobs built with `enqueue` and stored all at once (`Client.flow()`,
    `SyncClient.flow()`): every job or none, and none starts before all are stored."""

    def __init__(self, producer: Any, handle_type: Callable[[Any, JobRef], HandleType]) -> None:
        self._producer = producer
        self._handle_type = handle_type
        self._jobs: list[GraphJob] = []
        self._handles: list[HandleType] = []
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
    ) -> HandleType:
        """Add a job to the flow (stored when the flow's block ends); returns its handle, which
        later jobs of the flow may name in `after`. The options are those of `Client.enqueue`."""
        producer = self._producer
        options = enqueue_options(
            queue=queue or producer.default_queue, delay=delay, at=at, priority=priority,
            max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
        )  # fmt: skip
        job = graph_job(
            options, (function, args, kwargs), job_id, parent_edges(after or (), options.queue),
            check_after_failure(after_failure), producer.serializer, producer.encryption_keys,
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
        producer = self._producer
        return store_graph(
            producer.key_prefix, self._jobs, cluster=producer.cluster,
            signing_key=producer.signing_key, tracer=producer.tracer,
        )  # fmt: skip

    def stored(self, refs: Sequence[JobRef]) -> None:
        """Give the handles what storing found (`created`)."""
        for handle, ref in zip(self._handles, refs, strict=True):
            handle._ref = ref  # type: ignore[attr-defined]
