"""The example's job: a fake LLM call that streams its reply word by word as "token" events
(`jobd.current_job().emit`), reports progress, and returns the whole reply. Deterministic: the
same prompt gives the same tokens, so a test can check what the browser put together."""

from __future__ import annotations

import asyncio

import jobd

PREAMBLE = (
    "This reply comes from a fake model that streams one word at a time through a jobd job, "
    "so that the page can show it while it is written. You asked:"
)


def tokens(prompt: str) -> list[str]:
    """The reply to `prompt` as tokens: its words, each after the first with a leading space."""
    first, *rest = f"{PREAMBLE} {prompt}".split()
    return [first, *(f" {word}" for word in rest)]


async def chat(prompt: str, token_delay: float = 0.02) -> str:
    """Emit the reply's tokens `token_delay` seconds apart, as a model would; return the reply.
    (Not named `delay`: `client.enqueue(..., delay=...)` would take it as the enqueue option.)"""
    job = jobd.current_job()
    parts = tokens(prompt)
    for number, token in enumerate(parts, 1):
        await asyncio.sleep(token_delay)
        await job.emit("token", {"text": token})
        await job.progress(number / len(parts))
    return "".join(parts)
