"""The soak's job with an event stream: `emitter` writes the same ledger entries as the chaos
suite's `chaos` job (tests/jobs_for_tests.py), and between them emits `tokens` events named `token`
with `{"i": k}` and a progress report after each quarter, the shape of an LLM reply streamed to a
reader. The other features of the mix run the `chaos` job itself, under other function names
(`limited`: a rate and a concurrency limit) or inside flows.
"""

from __future__ import annotations

import asyncio

import jobd
from tests.jobs_for_tests import _identity, _record


async def emitter(key: str, tokens: int, seconds: float = 0.0) -> str:
    _record("start", key)
    job = jobd.current_job()
    for i in range(tokens):
        await job.emit("token", {"i": i})
        if (i + 1) % max(1, tokens // 4) == 0:
            await job.progress((i + 1) / tokens, f"{i + 1} of {tokens}")
        if seconds:
            await asyncio.sleep(seconds / tokens)
    _record("end", key)
    return _identity()
