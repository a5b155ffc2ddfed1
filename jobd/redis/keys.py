"""The Redis key schema. Every key of one queue shares the hash tag `{<queue>}` so the queue lives in
one Redis Cluster slot and each Lua script touches a single slot.

    <prefix>:{<queue>}:queued       ZSET  job id -> ordering score (priority, then enqueue order)
    <prefix>:{<queue>}:scheduled    ZSET  job id -> due time (ms, Redis clock): deferred jobs and retries
    <prefix>:{<queue>}:running      ZSET  job id -> start time (ms)
    <prefix>:{<queue>}:dead         ZSET  job id -> time it was dead-lettered (ms)
    <prefix>:{<queue>}:workers      ZSET  worker id -> heartbeat expiry (ms): the lease of all its jobs
    <prefix>:{<queue>}:owned:<wid>  SET   ids of the jobs worker <wid> runs from this queue
    <prefix>:{<queue>}:claim:<wid>  STR   the last claim of worker <wid>, so a replayed claim is harmless
    <prefix>:{<queue>}:stop:<wid>   LIST  pushed when worker <wid> stops: ends its blocking wait, and
                                          its claim then takes nothing (see Store.wait_and_claim)
    <prefix>:{<queue>}:seq          STR   enqueue counter (FIFO order within a priority)
    <prefix>:{<queue>}:wake         LIST  a marker that wakes one idle worker blocked on it
    <prefix>:{<queue>}:activity     HASH  last time any worker touched the queue, and since when it has
                                          been continuously touched (the reaper's grace after outages)
    <prefix>:{<queue>}:job:<id>     HASH  the job: function, payload, state, tries, result or error
    <prefix>:{<queue>}:done:<id>    LIST  pushed when the job ends, for clients waiting on its result
    <prefix>:{<queue>}:events:<id>  STREAM the job's events (ids 0-1, 0-2 ...: fields e name, t ms,
                                          d data JSON), once it emitted or was followed; expires
                                          with the job (see jobd/redis/lua/_lib.lua)
    <prefix>:{<queue>}:cron:<name>  HASH  cron entry <name> (enqueued on <queue>): its last tick (ms),
                                          the tick before it, the last job's id, the worker that fired it
    <prefix>:{<queue>}:aborts       pub/sub channel: ids of running jobs to cancel
    <prefix>:{<queue>}:queued:<g>   ZSET  the waiting jobs of group <g> (enqueue(..., group=)), scored
                                          as in queued
    <prefix>:{<queue>}:turns        ZSET  group -> its place in the queue: one entry per group with
                                          waiting jobs, so that groups are served in turn
    <prefix>:{<queue>}:grouped      STR   how many jobs wait in groups
    <prefix>:{<queue>}:waiting      ZSET  job id -> when it began to wait: jobs waiting for parents
    <prefix>:{<queue>}:waits:<id>   SET   the parents ("<queue> <id>") job <id> still waits for
    <prefix>:{<queue>}:dependants:<id>  SET the children ("<queue> <id>") of job <id> that have not
                                          ended yet: it keeps its result for them
    <prefix>:{<queue>}:settled      ZSET  job id -> when it ended: ended jobs of workflows whose
                                          dependants a worker has yet to tell (see
                                          jobd/redis/lua/_lib.lua, Workflows)
    <prefix>:{<queue>}:gated        ZSET  job id -> when stored: jobs of a flow over several queues
                                          (Redis Cluster) held until the flow is committed
    <prefix>:flow:{<gate>}          STR   "committed" or "abandoned": the fate of such a flow
    <prefix>:{<queue>}:stats:<minute>  HASH outcome -> tries that ended so in that minute, and
                                          failed:<function> (see jobd.worker.stats)
    <prefix>:{<queue>}:held         ZSET  key base of a limit with jobs held back -> when to look again
    <prefix>:{<queue>}:limit:<name>:[g:<group>:]<role>   the state of limit <name> (for one group
                                          of a per-group limit): running, starts, costs, spent,
                                          paused, held (see jobd/redis/lua/claim.lua)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
"""What queue names and the key prefix may contain: no braces, so the hash tag stays the queue's."""


def member_text(value: object) -> str:
    """A ZSET member or key part read back from Redis, as text (bytes decoded leniently)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}:"

    @property
    def queued(self) -> str:
        return self.base + "queued"

    @property
    def scheduled(self) -> str:
        return self.base + "scheduled"

    @property
    def running(self) -> str:
        return self.base + "running"

    @property
    def dead(self) -> str:
        return self.base + "dead"

    @property
    def workers(self) -> str:
        return self.base + "workers"

    @property
    def functions(self) -> str:
        """HASH function name -> until when (epoch ms) a live worker of the queue registers it."""
        return self.base + "functions"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def wake(self) -> str:
        return self.base + "wake"

    @property
    def activity(self) -> str:
        return self.base + "activity"

    @property
    def aborts(self) -> str:
        return self.base + "aborts"

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts that pop ids from a set append the id to it."""
        return self.base + "job:"

    @property
    def done_prefix(self) -> str:
        return self.base + "done:"

    @property
    def owned_prefix(self) -> str:
        return self.base + "owned:"

    @property
    def turns(self) -> str:
        return self.base + "turns"

    @property
    def grouped(self) -> str:
        return self.base + "grouped"

    def group(self, group: str) -> str:
        return f"{self.base}queued:{group}"

    @property
    def held(self) -> str:
        return self.base + "held"

    @property
    def limit_prefix(self) -> str:
        """Prefix of the keys of the limits of this queue's functions."""
        return self.base + "limit:"

    def limit(self, name: str, group: str | None = None) -> str:
        """The key base of limit `name` (of `group`, for a per-group limit): add a role."""
        base = f"{self.limit_prefix}{name}:"
        return base if group is None else f"{base}g:{group}:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    @property
    def waiting(self) -> str:
        return self.base + "waiting"

    @property
    def gated(self) -> str:
        return self.base + "gated"

    @property
    def settled(self) -> str:
        return self.base + "settled"

    def waits(self, job_id: str) -> str:
        return self.base + "waits:" + job_id

    def dependants(self, job_id: str) -> str:
        return self.base + "dependants:" + job_id

    def events(self, job_id: str) -> str:
        return self.base + "events:" + job_id

    def done(self, job_id: str) -> str:
        return self.done_prefix + job_id

    def owned(self, worker_id: str) -> str:
        return self.owned_prefix + worker_id

    def claim(self, worker_id: str) -> str:
        return self.base + "claim:" + worker_id

    def stop(self, worker_id: str) -> str:
        return self.base + "stop:" + worker_id

    def cron(self, name: str) -> str:
        return self.base + "cron:" + name


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    """Keys of the worker registry (not tied to a queue, so outside every queue's hash tag):

    <prefix>:registry            ZSET  worker id -> until when (ms) its entry counts as live
    <prefix>:registry:<wid>      HASH  host, pid, queues (comma-separated), concurrency, running,
                                       processed, version, started_at (ms), heartbeat_at (ms);
                                       expires a few heartbeats after the last one
    <prefix>:epoch               STR   when this prefix's data began (ms): gone or changed after
                                       a Redis restart means the data was lost (jobd.ops.serverwatch)
    <prefix>:limits              HASH  limit name -> JSON {"queue", "definition"} as workers publish
                                       them, for Client.limit (see jobd.worker.limits); expires a
                                       few heartbeats after the last worker's
    """

    prefix: str

    @property
    def index(self) -> str:
        return f"{self.prefix}:registry"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:registry:{worker_id}"

    @property
    def limits(self) -> str:
        return f"{self.prefix}:limits"
