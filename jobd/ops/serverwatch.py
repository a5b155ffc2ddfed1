"""Watching the Redis server itself (docs/reliability.md, findings 3 and 5): at startup, warn once about
settings that lose jobs (no AOF, an eviction policy); afterwards, notice a Redis that came back
without its data (restarted without persistence), log it once as an error and count it.

Detection: every key prefix has an epoch key (`<prefix>:epoch`, written once, no TTL) naming when
its data began. When INFO's run_id changes (a restart or a failover), the worker reads the epoch
again: gone, or different from the one it knew, means the data it knew is gone. A replica promoted
by a failover carries the key along, so a failover alone is not reported.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from jobd.ops.metrics import Metrics

logger = logging.getLogger("jobd.redis")


def _when(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


class ServerWatch:
    """One worker's view of its Redis server: its run_id and the prefix's epoch."""

    def __init__(self, prefix: str, url_text: str, metrics: Metrics | None = None) -> None:
        self.epoch_key = f"{prefix}:epoch"
        self.url_text = url_text
        self.metrics = metrics
        self.run_id: str | None = None
        self.epoch: bytes | str | None = None
        self.checked = False
        """The startup checks ran (once per process)."""
        self.enabled = True
        """False when the ACL user may not run INFO: nothing to watch with."""

    async def observe(self, client: redis.asyncio.Redis) -> None:
        """Call after each successful probe; cheap unless the server changed."""
        if not self.enabled:
            return
        try:
            server = await client.info("server")
        except ResponseError as error:  # NOPERM: a restricted user; the worker works without it
            self.enabled = False
            logger.info("cannot read INFO from Redis (%s): startup checks and data-loss "
                        "detection are off", error)  # fmt: skip
            return
        run_id = str(server.get("run_id", ""))
        if run_id == self.run_id:
            return
        if not self.checked:
            self.checked = True
            await self._check_settings(client)
        epoch = await client.get(self.epoch_key)
        if self.run_id is not None and self.epoch is not None and epoch != self.epoch:
            started_ms = float(server.get("server_time_usec", 0)) / 1000 - 1000 * float(
                server.get("uptime_in_seconds", 0)
            )
            logger.error(
                "Redis lost its data (restart without persistence?) — jobs enqueued before %s are "
                "gone: Redis at %s came back (run_id %s) without the data of key prefix %r. Turn "
                "on appendonly, or expect this after every restart.",
                _when(started_ms), self.url_text, run_id[:8], self.epoch_key.rsplit(":", 1)[0],
                extra={"event": "redis_data_lost"},
            )  # fmt: skip
            if self.metrics is not None:
                self.metrics.redis_data_loss.inc()
        if epoch is None:
            seconds, micros = await client.time()
            try:
                await client.set(self.epoch_key, str(int(seconds) * 1000 + micros // 1000), nx=True)
            except ResponseError:  # at maxmemory: written at the next probe that finds room
                return
            epoch = await client.get(self.epoch_key)
        self.run_id, self.epoch = run_id, epoch

    async def _check_settings(self, client: redis.asyncio.Redis) -> None:
        """Warn once about Redis settings that lose jobs, naming the setting and the fix."""
        persistence: dict[str, Any] = await client.info("persistence")
        memory: dict[str, Any] = await client.info("memory")
        if str(persistence.get("aof_enabled", "1")) == "0":
            logger.warning(
                "Redis at %s runs with appendonly no: a restart or crash of Redis loses the jobs "
                "written since its last snapshot, possibly all of them. Fix: appendonly yes "
                "(appendfsync everysec) in redis.conf, or CONFIG SET appendonly yes.",
                self.url_text, extra={"event": "redis_setting", "setting": "appendonly"},
            )  # fmt: skip
        policy = str(memory.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            logger.warning(
                "Redis at %s has maxmemory-policy %s: when it reaches maxmemory it deletes keys, "
                "and jobs with them. Fix: maxmemory-policy noeviction (enqueue then fails with a "
                "clear error instead).",
                self.url_text, policy, extra={"event": "redis_setting", "setting": "maxmemory-policy"},
            )  # fmt: skip
