"""The settings of jobd, declared once: frozen dataclasses for the loader, `config show`, docs.

Every `float` field is a duration in seconds (written "30s", "5m" … in TOML). Fields whose metadata
says `derived` are computed by the loader (from a table key, `listen`, the file): not TOML keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jobd.config.durations import format_duration

DERIVED: Mapping[str, Any] = MappingProxyType({"derived": True})
"""Field metadata: the loader computes this field; it is not a key of the TOML file."""

REDACTED = "***"

EMBEDDED_URL = "embedded"
"""`redis.url = "embedded"`: jobd starts a private Redis in `redis.data_dir` (see jobd.redis.embedded)."""


_USER_INFO = re.compile(r"^(?P<scheme>[^:/?#]*://)(?P<userinfo>[^/?#]*)@")


_SECRET_QUERY_KEYS = ("password", "ssl_password")


def redact_url(url: str) -> str:
    """`url` with the password of its user part and of a `password=` or `ssl_password=` query
    replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not a URL that urlsplit understands: hide everything before the last "@" of the authority.
        return _USER_INFO.sub(lambda match: f"{match['scheme']}{REDACTED}@", url)
    redacted = url
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.partition(":")[0]
            redacted = redacted.replace(f"//{parts.netloc}", f"//{user}:{REDACTED}@{host}", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(key, REDACTED if key in _SECRET_QUERY_KEYS else value) for key, value in pairs],
                safe="*/:",
            )
            redacted = redacted.replace(f"?{parts.query}", f"?{query}", 1)
    return redacted


class Backoff(StrEnum):
    """How the delay between tries grows."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class Durability(StrEnum):
    """When an enqueue counts as done (`redis.enqueue_durability`)."""

    PRIMARY = "primary"
    """Once the primary stored it (a failover may lose it: replication is asynchronous)."""
    REPLICA = "replica"
    """Once a replica confirmed it too (WAIT 1): it survives a failover to that replica."""


class MissedPolicy(StrEnum):
    """What a cron entry does about ticks missed while no worker was running."""

    SKIP = "skip"
    RUN_ONCE = "run-once"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    """The delay before the next try of a failed job (see `jobd.worker.backoff.backoff_delay`)."""

    # fixed: always `base`; exponential: base, 2 * base, 4 * base … capped at `max`
    backoff: Backoff = Backoff.EXPONENTIAL
    # first delay, seconds
    base: float = 1.0
    # longest delay, seconds
    max: float = 3600.0
    # spread each delay randomly over [delay/2, delay] so that failed jobs do not retry in lockstep
    jitter: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """Where Redis is. Its `repr` never shows the password."""

    # redis://[[user]:password@]host[:port][/db]; rediss:// for TLS, with the files as
    # ?ssl_ca_certs=…&ssl_certfile=…&ssl_keyfile=…; unix:///path/to/socket;
    # redis+sentinel://host:26379,host2:26379/service[/db] for the primary the Sentinels name
    # (?sentinel_password= if they have one); redis+cluster://host:6379,host2:6379 for a Redis
    # Cluster; rediss+… for TLS. Keep credentials in the environment ("${REDIS_URL}").
    # "embedded": a private Redis that jobd starts itself (development only; jobd.redis.embedded)
    url: str = "redis://localhost:6379/0"
    # every key jobd writes starts with "<key_prefix>:"
    key_prefix: str = "jobd"
    # how long one Redis command may take before the connection counts as broken, seconds
    socket_timeout: float = 10.0
    # how long connecting may take, seconds
    connect_timeout: float = 5.0
    # "replica": an enqueue returns only once a replica has the job too (Redis WAIT), so a
    # Sentinel failover cannot lose it; "primary" (default): once the primary has it
    enqueue_durability: Durability = Durability.PRIMARY
    # enqueue_durability = "replica": how long to wait for the replica before the enqueue fails
    replica_timeout: float = 1.0
    # url = "embedded": where that server keeps its data, socket and discovery file; a relative
    # path is taken from the directory of the configuration file
    data_dir: str = ".jobd"

    @property
    def embedded(self) -> bool:
        """Whether jobd runs its own private Redis (`url = "embedded"`)."""
        return self.url == EMBEDDED_URL

    def redacted_url(self) -> str:
        """The URL with any password (user part, `password=` query) replaced by `***`."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={self.redacted_url()!r}, key_prefix={self.key_prefix!r}, "
            f"socket_timeout={self.socket_timeout!r}, connect_timeout={self.connect_timeout!r}, "
            f"data_dir={self.data_dir!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """How the worker daemon consumes jobs."""

    # queues consumed, in order of precedence
    queues: tuple[str, ...] = ("default",)
    # job functions running at once in this process (a job storing its outcome no longer counts)
    concurrency: int = 100
    # on SIGTERM, time given to running jobs before they are cancelled and re-queued, seconds
    drain_timeout: float = 30.0
    # a dead worker's jobs are taken over after this long; renewed every lease_timeout / 3, seconds
    lease_timeout: float = 30.0
    # a job that has killed its worker this many times goes to the dead letters
    max_lost: int = 3
    # threads for plain `def` job functions; 0 = same as concurrency, capped at 32
    sync_threads: int = 0
    # largest encoded arguments accepted, bytes
    max_payload_bytes: int = 1_048_576
    # largest encoded result stored, bytes
    max_result_bytes: int = 1_048_576
    # arrays and objects nested deeper than this in arguments or results are refused (1 to 500)
    max_json_depth: int = 64
    # HMAC key: jobs must carry a signature made with it (from the environment only; "" = off)
    signing_key: str = field(default="", repr=False)
    # AES-256-GCM keys (32 random bytes as URL-safe base64, `jobd keygen`) of encrypted payloads:
    # the first encrypts, every one decrypts (from the environment only; empty entries are
    # skipped; none = off; docs/encryption.md)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsSettings:
    """Job events: what jobs emit (jobd.current_job().emit) and clients follow (docs/events.md)."""

    # events kept per job; beyond it the oldest are dropped (a reader is told of the gap)
    max_length: int = 10_000
    # largest encoded data of one event, bytes (emit raises PayloadTooLarge above it)
    max_data_bytes: int = 65_536
    # events a worker holds until it writes them; when full, emit waits for room, or drops the
    # event once a write has taken a second (Redis slow or away; readers are told of the gap)
    buffer: int = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingSettings:
    """OpenTelemetry spans of the worker (docs/tracing.md); needs `pip install 'jobd[otel]'`, and
    the SDK and exporter of the application's choice (set up in the startup hook, or by
    opentelemetry-instrument)."""

    # a `process <queue>` span per try, child of the producer's `send` span
    enabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """Where /metrics, /healthz and /readyz are served."""

    # "host:port", "[ipv6]:port"; port 0 picks a free port
    listen: str = "127.0.0.1:9100"
    # /healthz answers 503 once the event loop has not run a timer for this long
    max_loop_lag: float = 5.0
    # the host part of `listen`, without brackets
    host: str = field(default="127.0.0.1", metadata=DERIVED)
    # the port part of `listen`
    port: int = field(default=9100, metadata=DERIVED)


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultsSettings:
    """Job options that apply to every function unless its own table overrides them."""

    # a try running longer than this is cancelled and counts as failed, seconds
    timeout: float = 300.0
    # tries before a job is failed for good (dead-lettered)
    max_tries: int = 5
    # how long a finished job's result stays readable, seconds
    keep_result: float = 3600.0
    # delay between tries
    retry: RetrySettings = RetrySettings()


@dataclass(frozen=True, slots=True, kw_only=True)
class HookSettings:
    """Import paths of functions run once per worker process: `[async] def hook(state: dict)`."""

    # runs before the first job; fills `state` (shared clients, pools)
    startup: str | None = None
    # runs after the last job
    shutdown: str | None = None


PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DEFAULT_MAX_THROTTLED = 3600.0
"""The periods a rate is written in: "N/s", "N/m", "N/h"."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` in any window of `period` seconds ("500/m" is Rate(500, 60.0))."""

    count: int
    period: float

    def __str__(self) -> str:
        unit = next((unit for unit, seconds in PERIODS.items() if seconds == self.period), None)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{format_duration(self.period)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitSettings:
    """One [limits.NAME] table: a budget shared by every worker of the fleet. A job of a function
    that names the limit starts only when the limit allows it (see docs/limits.md)."""

    # the name functions list in `limits`: the key of [limits.NAME]
    name: str = field(metadata=DERIVED)
    # job starts per period, in any window of that length: "N/s", "N/m", "N/h" or N per a
    # duration ("20/1100ms"); none if unset
    rate: Rate | None = None
    # cost units per period (a job costs the `cost` it was enqueued with, default 1); none if unset
    cost: Rate | None = None
    # jobs holding this limit running at once across the fleet; none if unset
    concurrency: int | None = None
    # true: each job group (enqueue(..., group=)) has a budget of its own
    per_group: bool = False
    # a job throttled (jobd.Throttled) for longer than this in all is dead-lettered, seconds
    max_throttled: float = DEFAULT_MAX_THROTTLED


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionSettings:
    """One job function, with every option resolved against [defaults] and [worker]."""

    # the name producers enqueue: the key of [functions.NAME]
    name: str = field(metadata=DERIVED)
    # "package.module:attribute"
    path: str
    # queue its jobs go to when the producer names none; default: the first of worker.queues
    queue: str = "default"
    # see DefaultsSettings
    timeout: float = 300.0
    max_tries: int = 5
    keep_result: float = 3600.0
    # a [functions.NAME.retry] table overrides single keys of defaults.retry
    retry: RetrySettings = RetrySettings()
    # names of [limits] tables: a job starts only when every one of them allows it
    limits: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CronSettings:
    """One [[cron]] entry: enqueue `function` on every tick of `schedule`."""

    # unique among the cron entries
    name: str
    # a name from [functions]
    function: str
    # croniter syntax: 5 fields, a 6th for seconds, a 7th for the year
    schedule: str
    # IANA time zone the schedule is read in
    timezone: str = "UTC"
    # positional arguments of the job
    args: tuple[Any, ...] = ()
    # keyword arguments of the job
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # queue to enqueue on; None: the function's queue
    queue: str | None = None
    # job priority from -1000 to 1000, higher runs first
    priority: int = 0
    # false keeps the entry in the file but never fires it
    enabled: bool = True
    # after downtime: skip the missed ticks, or run once for all of them
    missed: MissedPolicy = MissedPolicy.SKIP


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The whole configuration of a jobd deployment (one `jobs.toml`)."""

    # the file these settings came from; None when loaded from a string
    source: Path | None = field(default=None, metadata=DERIVED)
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    http: HttpSettings = HttpSettings()
    defaults: DefaultsSettings = DefaultsSettings()
    events: EventsSettings = EventsSettings()
    tracing: TracingSettings = TracingSettings()
    hooks: HookSettings = HookSettings()
    # job functions by name, in file order (read-only)
    functions: Mapping[str, FunctionSettings] = field(default_factory=lambda: MappingProxyType({}))
    # cron entries, in file order
    cron: tuple[CronSettings, ...] = ()
    # limits by name, in file order (read-only)
    limits: Mapping[str, LimitSettings] = field(default_factory=lambda: MappingProxyType({}))

    def function_for(self, name: str) -> FunctionSettings | None:
        """The settings of the function producers enqueue as `name`, or None if there is none."""
        return self.functions.get(name)

    def redis_data_dir(self) -> Path:
        """`redis.data_dir` as an absolute path: a relative one is taken from the directory of
        the configuration file (of the working directory for settings not read from a file)."""
        base = self.source.parent if self.source is not None else Path.cwd()
        return Path(os.path.abspath(base / Path(self.redis.data_dir).expanduser()))
