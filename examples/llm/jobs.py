"""The example's job: one LLM call to the fake provider (examples/llm/provider.py), under the
[limits] of examples/llm/jobs.toml. A 429 raises jobd.Throttled, which pauses the limit for the
fleet and retries uncharged; the reply's token count corrects the cost charged at the start."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

import jobd

PROVIDER = os.environ.get("LLM_PROVIDER_URL", "http://127.0.0.1:8700")


def _post(prompt: str, max_tokens: int) -> tuple[int, dict[str, Any], str | None]:
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(
        PROVIDER + "/v1/chat", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response), None
    except urllib.error.HTTPError as error:
        return error.code, {}, error.headers.get("Retry-After")


async def chat(prompt: str, max_tokens: int = 100) -> str:
    """Ask the provider; enqueue it with cost=max_tokens, the most it can use."""
    status, reply, retry_after = await asyncio.to_thread(_post, prompt, max_tokens)
    if status == 429:
        raise jobd.Throttled(float(retry_after or 1), limit="provider")
    if status != 200:
        raise RuntimeError(f"provider answered {status}")
    await jobd.current_job().set_cost(int(reply["usage"]["total_tokens"]))
    return str(reply["text"])
