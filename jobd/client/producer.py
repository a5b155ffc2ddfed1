"""What the async and the sync producer clients share: option checks, the serializer, the operations
they drive (jobd.client.operations), and the job handle's read-only parts. Each client adds only its I/O."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    OutOfMemoryError,
)

from jobd import crypto
from jobd.client import events, flows, tracing
from jobd.client import operations as commands
from jobd.client.operations import JobRef, Operation
from jobd.config.settings import Durability, redact_url
from jobd.errors import InvalidJobOption, RedisAuthError, RedisFull, RedisTLSError, RedisUnavailable
from jobd.events import event_number
from jobd.model import check_job_id
from jobd.redis.auth import auth_message, is_auth_error, is_pool_exhausted
from jobd.redis.connect import topology_kind
from jobd.redis.tls import tls_problem
from jobd.serializer import DEFAULT_MAX_BYTES, JsonSerializer, Serializer
from jobd.signing import key_bytes, key_from_environment

Call = tuple[str, Sequence[Any], dict[str, Any]]


def options_from_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The client options that the worker's `jobs.toml` at `path` implies: its Redis (for
    `url = "embedded"`, the running server's URL from the data dir), key prefix, timeouts, payload
    limit, signing and encryption keys, and the first of `worker.queues` as default queue.
    ConfigError if the file is invalid;
    RedisUnavailable if it asks for the embedded Redis and no worker runs it.

    Loads jobd.config only now; it reads TOML with tomllib and loads none of the worker's parts."""
    from jobd.config import loader as config
    from jobd.redis import embedded

    settings = config.load(os.fspath(path))
    return {
        "url": embedded.client_url(settings),
        "key_prefix": settings.redis.key_prefix,
        "default_queue": settings.worker.queues[0],
        "max_payload_bytes": settings.worker.max_payload_bytes,
        "socket_timeout": settings.redis.socket_timeout,
        "connect_timeout": settings.redis.connect_timeout,
        "signing_key": settings.worker.signing_key or None,
        "encryption_keys": settings.worker.encryption_keys or None,
        "enqueue_durability": settings.redis.enqueue_durability,
        "replica_timeout": settings.redis.replica_timeout,
    }


_UNRESOLVED = object()


class Producer:
    """Base of `Client` and `SyncClient`."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "jobd",
        default_queue: str = "default",
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        signing_key: str | bytes | None = None,
        enqueue_durability: str = Durability.PRIMARY,
        replica_timeout: float = 1.0,
        tracing: bool = True,
        tracer_provider: Any = None,
        encryption_keys: Iterable[str | bytes] | str | None = None,
    ) -> None:
        self.tracing = tracing
        self.tracer_provider = tracer_provider
        """The OpenTelemetry TracerProvider of the `send` spans; None: the global one."""
        """Trace enqueues when OpenTelemetry is installed and the app set a tracer provider."""
        self._tracer: Any = _UNRESOLVED
        try:
            durability = Durability(enqueue_durability)
        except ValueError:
            choices = ", ".join(repr(d.value) for d in Durability)
            raise InvalidJobOption(
                f"enqueue_durability must be {choices}, got {enqueue_durability!r}"
            ) from None
        if durability is Durability.REPLICA and topology_kind(url) == "cluster":
            raise InvalidJobOption(
                'enqueue_durability = "replica" is not supported on Redis Cluster'
            )
        self.cluster = topology_kind(url) == "cluster"
        """Graphs of jobs must then keep to one queue (jobd.client.flows)."""
        self.wait_replicas = 1 if durability is Durability.REPLICA else 0
        """Replicas that must confirm an enqueue before it returns (WAIT)."""
        self.replica_timeout_ms = max(1, round(replica_timeout * 1000))
        self.key_prefix = commands.check_queue(key_prefix)
        self.default_queue = commands.check_queue(default_queue)
        self.serializer: Serializer = JsonSerializer(max_payload_bytes)
        self.url_text = redact_url(url)
        # None: the key in JOBD_SIGNING_KEY, if set. Never part of repr().
        self._signing_key = (
            key_from_environment() if signing_key is None else key_bytes(signing_key)
        )
        # None: the keys in JOBD_ENCRYPTION_KEYS, if set; () turns encryption off.
        self._keys = crypto.producer_keys(encryption_keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url_text!r}, key_prefix={self.key_prefix!r})"

    def enqueue_operation(
        self,
        calls: Iterable[Call],
        job_ids: Sequence[str | None] | None = None,
        *,
        queue: str | None,
        delay: float | timedelta | None,
        at: datetime | None,
        priority: int,
        max_tries: int | None,
        timeout: float | timedelta | None,
        expires: float | timedelta | None,
        strict: bool,
        group: str | None = None,
        cost: int | None = None,
        after: Iterable[flows.HasRef | str] | None = None,
        after_failure: str = "fail",
    ) -> Operation:
        """Check the options and build the enqueue operation (nothing is sent yet). With `after`,
        the jobs wait for those parents (jobd.client.flows)."""
        options = commands.enqueue_options(
            queue=queue or self.default_queue, delay=delay, at=at, priority=priority,
            max_tries=max_tries, timeout=timeout, expires=expires, group=group, cost=cost,
        )  # fmt: skip
        normalized = [(name, tuple(args), dict(kwargs)) for name, args, kwargs in calls]
        if after is not None or after_failure != "fail":
            return self._enqueue_after(
                options, normalized, job_ids, after or (), after_failure, strict
            )
        return commands.enqueue(
            self.key_prefix, options, normalized, self.serializer, job_ids=job_ids, strict=strict,
            signing_key=self._signing_key, tracer=self.tracer, keys=self._keys,
        )  # fmt: skip

    @property
    def signing_key(self) -> bytes | None:
        return self._signing_key

    @property
    def encryption_keys(self) -> crypto.Keys | None:
        """The keys that encrypt this client's jobs (the first) and decrypt what it reads, or None
        (jobd.crypto; their repr shows key ids only)."""
        return self._keys

    @property
    def tracer(self) -> Any:
        """The OpenTelemetry tracer of `send` spans, or None (see jobd.client.tracing)."""
        if self._tracer is _UNRESOLVED:
            self._tracer = tracing.tracer_for(self.tracing, self.tracer_provider)
        return self._tracer

    def _enqueue_after(
        self,
        options: commands.EnqueueOptions,
        calls: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]],
        job_ids: Sequence[str | None] | None,
        after: Iterable[flows.HasRef | str],
        after_failure: str,
        strict: bool,
    ) -> Operation:
        parents = flows.parent_edges(after, options.queue)
        policy = flows.check_after_failure(after_failure)
        jobs = [
            flows.graph_job(options, call, job_id, parents, policy, self.serializer, self._keys)
            for call, job_id in zip(calls, job_ids or [None] * len(calls), strict=True)
        ]
        if strict:
            yield from commands.check_registered(
                self.key_prefix, options.queue, {call[0] for call in calls}
            )
        refs: list[JobRef] = yield from flows.store_graph(
            self.key_prefix, jobs, cluster=self.cluster, signing_key=self._signing_key,
            tracer=self.tracer,
        )  # fmt: skip
        return refs

    def ref(self, job_id: str, queue: str | None) -> JobRef:
        return JobRef(check_job_id(job_id), commands.check_queue(queue or self.default_queue))

    def translate(self, error: Exception) -> Exception:
        """Turn redis-py errors a user cannot act on into jobd errors that say what to do."""
        if is_auth_error(error):
            return RedisAuthError(auth_message(self.url_text, error))
        problem = tls_problem(error)
        if problem is not None:
            return RedisTLSError(f"Redis at {self.url_text}: {problem}")
        if is_pool_exhausted(error):
            return RedisUnavailable(
                f"every connection the client may open to Redis at {self.url_text} is in use "
                "(max_connections in the URL): raise that limit, or remove it and the pool grows "
                "with the calls made at once"
            )
        if isinstance(error, RedisConnectionError):
            return RedisUnavailable(f"cannot reach Redis at {self.url_text}: {error}")
        if isinstance(error, OutOfMemoryError):
            return RedisFull(
                f"Redis at {self.url_text} is full: it reached maxmemory and refuses new writes, "
                "so nothing was stored. Free memory (fewer waiting jobs, a shorter keep_result) "
                f"or raise maxmemory. Redis said: {error}"
            )
        return error


class Handle:
    """Base of the job handles: identity, and the operations their methods drive."""

    def __init__(self, producer: Producer, ref: JobRef) -> None:
        self._producer = producer
        self._ref = ref

    @property
    def id(self) -> str:
        return self._ref.id

    @property
    def queue(self) -> str:
        return self._ref.queue

    @property
    def created(self) -> bool:
        """False when enqueue found a job with this id already (deduplicated)."""
        return self._ref.created

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, queue={self.queue!r})"

    def _status(self) -> Operation:
        return commands.status(self._producer.key_prefix, self._ref)

    def _info(self) -> Operation:
        producer = self._producer
        return commands.info(
            producer.key_prefix, self._ref, producer.serializer, producer.encryption_keys
        )

    def _result(self, timeout: float | None) -> Operation:
        producer = self._producer
        return commands.result(
            producer.key_prefix, self._ref, producer.serializer, timeout, producer.encryption_keys
        )

    def _follow(self, after: str | None, what: str, keepalive: float | None) -> Operation:
        """job.events() / job.sse(): checks `after` at once (InvalidJobOption naming `what`)."""
        producer = self._producer
        return events.follow(
            producer.key_prefix, self._ref, producer.serializer, event_number(after, what),
            keepalive, producer.encryption_keys,
        )  # fmt: skip

    def _abort(self, timeout: float) -> Operation:
        return commands.abort(self._producer.key_prefix, self._ref, timeout)
