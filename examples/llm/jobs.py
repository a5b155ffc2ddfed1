"""The example's job: one LLM call to the fake provider (examples/llm/provider.py), under the
[limits] of examples/llm/jobs.toml. A 429 raises jobd.Throttled, which pauses the limit for the
fleet and retries uncharged; the reply's token count corrects the cost charged at the start."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from typing import Any

import jobd

PROVIDER = os.environ.get("LLM_PROVIDER_URL", "http://127.0.0.1:8700")


async def _post(prompt: str, max_tokens: int) -> tuple[int, dict[str, Any], str | None]:
    """POST /v1/chat over a plain asyncio connection (the example needs no HTTP library)."""
    url = urllib.parse.urlsplit(PROVIDER)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens}).encode()
    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    try:
        writer.write(
            b"POST /v1/chat HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (url.netloc.encode(), len(body), body)
        )
        await writer.drain()
        head, _, rest = (await reader.read()).partition(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    reply = json.loads(rest) if status == 200 else {}
    return status, reply, headers.get("Retry-After")


async def chat(prompt: str, max_tokens: int = 100) -> str:
    """Ask the provider; enqueue it with cost=max_tokens, the most it can use."""
    status, reply, retry_after = await _post(prompt, max_tokens)
    if status == 429:
        raise jobd.Throttled(float(retry_after or 1), limit="provider")
    if status != 200:
        raise RuntimeError(f"provider answered {status}")
    await jobd.current_job().set_cost(int(reply["usage"]["total_tokens"]))
    return str(reply["text"])
