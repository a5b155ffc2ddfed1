"""Per-minute outcome counts in Redis, for the dashboard's throughput chart and its failures per
function: the job handler counts in memory (no Redis call on the hot path), and the monitor adds
the counts to the minute's bucket every few seconds.

    <prefix>:{<queue>}:stats:<minute>   HASH  outcome -> tries that ended so in that minute
                                              (succeeded, failed, retried, timed_out, aborted,
                                              throttled, lost), and failed:<function> -> jobs of
                                              that function that failed for good; <minute> is
                                              epoch ms // 60000; expires after STATS_KEEP_MS

A worker that dies loses the counts of its last few seconds: the chart is a view, not a ledger."""

from __future__ import annotations

import time
from collections import Counter

import redis.asyncio

from jobd.redis.keys import QueueKeys

STATS_KEEP_MS = 2 * 3_600_000
"""Buckets are kept two hours: the dashboard shows the last one."""
FAILED = ("failed", "timed_out")
"""Outcomes that count against a function (a try that ended the job as failed)."""


class OutcomeCounts:
    """What this worker's tries ended as, since the last flush, per queue."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._counts: dict[str, Counter[str]] = {}

    def count(self, queue: str, function: str, outcome: str, *, final: bool) -> None:
        """One try of `function` ended as `outcome`; `final`: the job failed for good."""
        counts = self._counts.get(queue)
        if counts is None:
            counts = self._counts[queue] = Counter()
        counts[outcome] += 1
        if final:
            counts["failed:" + function] += 1

    async def flush(self, client: redis.asyncio.Redis, now_ms: int | None = None) -> None:
        """Add the counts to the current minute's buckets (one pipeline)."""
        if not self._counts:
            return
        taken, self._counts = self._counts, {}
        minute = (now_ms if now_ms is not None else int(time.time() * 1000)) // 60_000
        async with client.pipeline(transaction=False) as pipe:
            for queue, counts in taken.items():
                key = stats_key(self.prefix, queue, minute)
                for field, value in counts.items():
                    pipe.hincrby(key, field, value)
                pipe.pexpire(key, STATS_KEEP_MS)
            await pipe.execute()


def stats_key(prefix: str, queue: str, minute: int) -> str:
    """The bucket of `queue` for `minute` (epoch ms // 60000)."""
    return f"{QueueKeys(prefix, queue).base}stats:{minute}"
