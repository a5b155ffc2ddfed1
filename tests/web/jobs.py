"""Job functions of the dashboard's tests (run by real jobd daemons)."""

from __future__ import annotations

import os

import redis


async def flaky(key: str) -> str:
    """Fails until the ledger has `key` (the fix is deployed), then succeeds."""
    ledger = redis.Redis.from_url(os.environ["LEDGER_URL"])
    try:
        if not ledger.exists(key):
            raise RuntimeError(f"upstream refused {key!r}: not fixed yet")
    finally:
        ledger.close()
    return "fixed"
