"""Run the LLM example end to end: the fake provider, a jobd worker (with its embedded Redis) and
a burst of jobs; print how many calls the provider refused with 429.

    python -m examples.llm.demo                # under [limits] (examples/llm/jobs.toml)
    python -m examples.llm.demo --unlimited    # the same burst without limits

The worker is the real daemon (`python -m jobd --config ...`) in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from examples.llm.provider import serve
from jobd.client import Client

HERE = Path(__file__).resolve().parent
PROVIDER_RPS = 20
PROVIDER_TPS = 2000


async def burst(config: Path, jobs: int) -> float:
    """Enqueue `jobs` chat jobs and wait for all; returns the seconds it took."""
    async with Client.from_config(config) as client:
        started = time.monotonic()
        handles = await client.enqueue_many(
            [("chat", (f"prompt {n}", 100), {}) for n in range(jobs)], cost=100
        )
        await asyncio.gather(*(job.result(timeout=300) for job in handles))
        return time.monotonic() - started


def run(config: Path, jobs: int) -> dict[str, float]:
    server, budget = serve(0, PROVIDER_RPS, PROVIDER_TPS)
    environ = {**os.environ, "LLM_PROVIDER_URL": f"http://127.0.0.1:{server.server_port}"}
    repo = str(HERE.parent.parent)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, environ.get("PYTHONPATH")]))
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobd", "--config", str(config), "--log-level", "warning"],
        env=environ,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the worker writes its embedded Redis's URL once it is up
            try:
                seconds = asyncio.run(burst(config, jobs))
                break
            except Exception:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        server.shutdown()
        server.server_close()
    stats = budget.stats()
    return {"jobs": jobs, "seconds": round(seconds, 2), **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the burst (default: 200)")
    parser.add_argument("--unlimited", action="store_true", help="run without [limits]")
    arguments = parser.parse_args()
    config = HERE / ("unlimited.toml" if arguments.unlimited else "jobs.toml")
    result = run(config, arguments.jobs)
    print(
        f"{result['jobs']} jobs in {result['seconds']}s: the provider served {result['served']} "
        f"calls and refused {result['refused']} with 429"
    )


if __name__ == "__main__":
    main()
