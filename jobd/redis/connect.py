"""Turn a Redis URL into a redis-py client: the one place where jobd's clients are made.

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server (redis-py's ``from_url``).
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`` (and
  ``rediss+sentinel://``): the primary that the Sentinels name for ``service``. After a failover
  redis-py asks them again (a connection to a demoted primary ends on its first READONLY reply), so
  workers and producers follow the new primary. ``?sentinel_username=&sentinel_password=`` are the
  Sentinels' own credentials where they differ from the data nodes'.
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]`` (and ``rediss+cluster://``):
  a Redis Cluster, reached through any of the given nodes; every command follows its key's slot.
  Each queue's keys share one hash tag, so every jobd script touches one slot.

Needs only ``redis``: the producer client imports it. Standalone and Sentinel asyncio clients
use `_LeanConnection`: commands packed by hiredis's C packer, and written without a task per
write; `execute_raw` runs jobd's scripts on them without redis-py's per-command wrapping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import DataError

try:
    import hiredis
except ImportError:  # a dependency, but an install without it keeps redis-py's own packer
    hiredis = None  # type: ignore[assignment]
else:
    if not hasattr(hiredis, "pack_command"):  # hiredis before 2.2 parses but does not pack
        hiredis = None  # type: ignore[assignment]

DEFAULT_PORT = {"sentinel": 26379, "cluster": 6379}
UNLIMITED_CONNECTIONS = 2**31
"""The pools' size unless the URL sets `max_connections`: as many connections as calls at once,
as redis-py did before 8. redis-py 8 caps a pool at 100 and then fails each further call with
MaxConnectionsError instead of waiting: a web app enqueueing from 300 requests at once lost 200
of them, and a worker with concurrency 400 took the errors of its own pool for Redis being down."""
SENTINEL_CREDENTIALS = ("sentinel_username", "sentinel_password")


RETRY_ATTEMPTS = 3


def retry_backoff() -> ExponentialWithJitterBackoff:
    """Backoff between redis-py's own retries of a command (50 ms doubling up to 0.5 s)."""
    return ExponentialWithJitterBackoff(base=0.05, cap=0.5)


def connection_options(socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
    """redis-py options shared by producers and workers: a few quick retries instead of redis-py's
    default ten (which stall a call for up to a minute), and timeouts above every blocking wait."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": Retry(retry_backoff(), RETRY_ATTEMPTS),
        "health_check_interval": 10,
    }


@dataclass(frozen=True, slots=True)
class Topology:
    """What a ``redis+sentinel://`` or ``redis+cluster://`` URL names."""

    kind: str
    """"sentinel" or "cluster" """
    nodes: tuple[tuple[str, int], ...]
    service: str
    """The Sentinel service name ("" for a cluster)."""
    options: dict[str, Any]
    """Connection options for the data nodes (credentials, db, TLS, timeouts from the query)."""
    sentinel_options: dict[str, Any]


def topology_kind(url: str) -> str | None:
    """ "sentinel" or "cluster" for those URLs, None for one server."""
    scheme = url.partition("://")[0].lower()
    base, plus, kind = scheme.partition("+")
    return kind if plus and base in ("redis", "rediss") and kind in DEFAULT_PORT else None


def parse_topology(url: str) -> Topology:
    """Split a ``redis+sentinel://`` or ``redis+cluster://`` URL; ValueError says what is wrong."""
    kind = topology_kind(url)
    if kind is None:
        raise ValueError("not a redis+sentinel:// or redis+cluster:// URL")
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = tuple(_node(text, DEFAULT_PORT[kind]) for text in hosts.split(","))
    path = [unquote(piece) for piece in parts.path.split("/") if piece]
    service = ""
    if kind == "sentinel":
        if not path:
            raise ValueError("name the Sentinel service after the hosts, like /mymaster")
        service, path = path[0], path[1:]
    if len(path) > 1 or (kind == "cluster" and path and path[0] != "0"):
        raise ValueError(
            "a cluster URL takes no database number" if kind == "cluster"
            else "after the service name only a database number may follow, like /mymaster/0"
        )  # fmt: skip
    if path and not path[0].isdigit():
        raise ValueError(f"database must be a number, got {path[0]!r}")
    query = parse_qs(parts.query)
    sentinel_options = {
        name.removeprefix("sentinel_"): query.pop(name)[-1]
        for name in SENTINEL_CREDENTIALS
        if name in query
    }
    # redis-py's own parser for the rest: credentials, db and its query options (TLS files, ...)
    tls = parts.scheme.lower().startswith("rediss")
    base = f"{'rediss' if tls else 'redis'}://{userinfo}{at}{nodes[0][0]}:{nodes[0][1]}"
    options: dict[str, Any] = dict(
        parse_url(f"{base}/{path[0] if path else 0}?{urlencode(query, doseq=True)}")
    )
    for name in ("host", "port", "connection_class"):
        options.pop(name, None)
    if tls:
        options["ssl"] = True
    if kind == "cluster":
        options.pop("db", None)
    return Topology(kind, nodes, service, options, sentinel_options)


def _node(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[ipv6]:port``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or str(default_port)
    else:
        host, colon, port = text.partition(":")
        port = port if colon else str(default_port)
    if not host:
        raise ValueError(f"every host needs a name, got {text!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port must be a number from 1 to 65535, got {port!r} in {text!r}")
    return host, int(port)


class _LeanConnection:
    """redis-py's asyncio connection with a cheaper way out for each command; the bytes on the
    wire, the errors and the timeouts stay redis-py's.

    - Packing with hiredis's C packer (when installed), as redis-py's synchronous connections do:
      its asyncio packer is Python, and was a quarter of an awaited `Client.enqueue` (callgrind:
      503k instructions before, 382k after).
    - Sending: redis-py wraps every write in `asyncio.wait_for`, which in Python 3.11 runs the
      write in a task of its own, one event-loop turn later. A write that the socket takes at once
      cannot time out, so here it is written directly (382k -> 347k instructions per enqueue, and
      the request leaves a loop turn sooner). Only bytes the socket did not take are drained under
      redis-py's write timeout; a connection not yet open, closing, or due for its health check
      goes redis-py's own way.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if hiredis is None:
            return super().pack_command(*args)
        # as redis-py's synchronous HiredisRespSerializer: a first argument 'CONFIG GET' is two
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as error:  # bool, None ...: redis-py's own error for them
            raise DataError(f"{error} Got: {[type(arg).__name__ for arg in args]}") from None

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        # redis-py's own attributes, read defensively: a release without them takes its own path
        writer: asyncio.StreamWriter | None = getattr(self, "_writer", None)
        if (
            writer is None
            or not isinstance(command, (bytes, list))
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
            or (
                check_health
                and getattr(self, "health_check_interval", 1)
                and asyncio.get_running_loop().time() > getattr(self, "next_health_check", 0)
            )
        ):
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        writer.writelines([command] if isinstance(command, bytes) else command)
        if writer.transport.get_write_buffer_size():
            # the socket did not take it all: drain under redis-py's write timeout (no health
            # check: its PING would go out behind these bytes and read their reply)
            await super().send_packed_command([], False)  # type: ignore[misc]


_LEAN: dict[type[AbstractConnection], type[AbstractConnection]] = {}

_SOCKET_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


async def execute_raw(client: redis.asyncio.Redis, *args: Any) -> Any:
    """``client.execute_command(*args)`` for a command whose reply redis-py does not reshape
    (EVALSHA, EVAL): the raw reply.

    On a client of `open_async` (a pool of lean connections) it sends and reads on a connection
    of the pool under redis-py's own timeouts and health check, and keeps that connection for
    its next call instead of handing it back: redis-py 8's `execute_command` and the pool's
    get/release wrap the same steps in retry closures, locks, event dispatch and observability
    hooks, a quarter of an awaited `Client.enqueue` (callgrind: 395k -> 298k instructions).
    Only a connection whose reply was read whole is kept; any other exception hands it back to
    the pool, which checks it before its next use. A socket error or timeout (after which
    redis-py has dropped the connection) goes on to `execute_command`, whose retries replay the
    command as they would have: jobd's scripts are safe to replay."""
    pool = getattr(client, "connection_pool", None)
    if (
        pool is None
        or client.connection is not None
        or not issubclass(pool.connection_class, _LeanConnection)
    ):
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    kept: list[AbstractConnection] | None = getattr(pool, "_jobd_kept", None)
    if kept is None:
        kept = pool._jobd_kept = []
    connection = kept.pop() if kept else await pool.get_connection()
    try:
        await connection.send_command(*args)
        reply = await connection.read_response()
    except redis.exceptions.ResponseError:
        kept.append(connection)  # an error reply, read whole: the connection is fine
        raise
    except _SOCKET_ERRORS:
        await pool.release(connection)
    except BaseException:
        await pool.release(connection)
        raise
    else:
        kept.append(connection)
        return reply
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _lean(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` with _LeanConnection's packing and sending."""
    lean = _LEAN.get(connection_class)
    if lean is None:
        name = "Lean" + connection_class.__name__
        lean = _LEAN[connection_class] = type(name, (_LeanConnection, connection_class), {})
    return lean


def open_async(url: str, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client for `url` with redis-py `options` (timeouts, retry, ...).

    A cluster client is returned as `redis.asyncio.Redis`: it answers every command jobd sends
    (scripts, lists, pub/sub, pipelines), which tests/chaos/test_topologies.py checks."""
    if topology_kind(url) is None:
        # the URL's own ?max_connections= wins: from_url lets its query override these options
        pool = redis.asyncio.ConnectionPool.from_url(url, **_pool_size(options))
        pool.connection_class = _lean(pool.connection_class)
        client = redis.asyncio.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # as Redis.from_url: aclose() closes the pool
        return client
    topology = parse_topology(url)
    merged = _pool_size({**topology.options, **options})
    if topology.kind == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(topology, merged)
        )
        managed = (
            redis.asyncio.sentinel.SentinelManagedSSLConnection
            if merged.get("ssl")
            else redis.asyncio.sentinel.SentinelManagedConnection
        )
        client = sentinel.master_for(topology.service, connection_class=_lean(managed), **merged)
        return cast(redis.asyncio.Redis, client)
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in topology.nodes]
    return cast(redis.asyncio.Redis, redis.asyncio.RedisCluster(startup_nodes=nodes, **merged))


def _pool_size(options: dict[str, Any]) -> dict[str, Any]:
    return {"max_connections": UNLIMITED_CONNECTIONS, **options}


def open_sync(url: str, **options: Any) -> redis.Redis:
    """A synchronous client for `url`; see `open_async`."""
    if topology_kind(url) is None:
        return redis.Redis.from_url(url, **_pool_size(options))
    topology = parse_topology(url)
    merged = _pool_size({**topology.options, **options})
    if topology.kind == "sentinel":
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(topology.nodes), sentinel_kwargs=_sentinel_kwargs(topology, merged)
        )
        return cast(redis.Redis, sentinel.master_for(topology.service, **merged))  # type: ignore[no-untyped-call, unused-ignore]
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in topology.nodes]  # type: ignore[no-untyped-call]
    return cast(redis.Redis, redis.cluster.RedisCluster(startup_nodes=nodes, **merged))


def _sentinel_kwargs(topology: Topology, options: dict[str, Any]) -> dict[str, Any]:
    """Options for the connections to the Sentinels themselves: the same timeouts and TLS as
    the data nodes, their own credentials if the URL names them."""
    shared = {
        name: value
        for name, value in options.items()
        if name.startswith(("socket_", "ssl")) or name in ("retry", "health_check_interval")
    }
    return {**shared, **topology.sentinel_options}


async def discover(client: redis.asyncio.Redis) -> None:
    """Learn a cluster's slot map before a first call that does not do it itself (pub/sub in
    redis-py's cluster client); nothing for other clients."""
    if isinstance(client, redis.asyncio.RedisCluster):
        await client.initialize()
