"""Runs one adapter step in its library's venv and reads its `BENCH-RESULT` line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench.redis import RedisServer
from bench.venvs import python_for

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "
STEP_TIMEOUT_SECONDS = 900


def run_step(
    peer: str, args: list[str], main: RedisServer, counter: RedisServer, logdir: Path, tag: str
) -> dict[str, Any]:
    """One step on freshly emptied servers; `{"na": reason}` when the step could not be done."""
    main.reset()
    counter.reset()
    command = [
        python_for(peer), "-m", f"bench.adapters.{peer}", *args,
        "--redis", main.url, "--counter", counter.url, "--logdir", str(logdir), "--tag", tag,
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_REDIS_URL": main.url,
        "BENCH_COUNTER_URL": counter.url,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    stderr_path = logdir / f"{peer}-{tag}.driver.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
        try:
            stdout, _ = proc.communicate(timeout=STEP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            stdout = b""
        finally:
            # the driver's session: it and any worker it left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    return {"na": f"driver failed (exit {proc.returncode}); see {stderr_path}"}
