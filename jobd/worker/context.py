"""What the parts of one worker share. The `Worker` builds it once; each part (fetcher, job
handler, lease keeper, monitor, cron scheduler) takes it and reads only what it uses, so every
part can be built and tested without a `Worker`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio

from jobd.config.settings import Settings
from jobd.ops.metrics import Metrics
from jobd.worker.resilience import RedisCaller, RedisHealth
from jobd.worker.running import RunningJobs
from jobd.worker.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerContext:
    """The settings, identity, Redis access and shared state of one worker."""

    settings: Settings
    worker_id: str
    redis: redis.asyncio.Redis
    """The hot path's client (claims, finishes, retries)."""
    call: RedisCaller
    """Every Redis call of the loops goes through it: retried through outages."""
    redis_health: RedisHealth
    store: Store
    metrics: Metrics
    running: RunningJobs
    finished: asyncio.Event
    """Set once the worker has drained: the helper loops end."""
