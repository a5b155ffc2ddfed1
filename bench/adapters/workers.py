"""Worker processes of one step: spawned through the library's own CLI, watched, and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from bench.adapters.procs import MemorySampler, start_time, tree

REPO = Path(__file__).resolve().parents[2]
STOP_SECONDS = 5.0  # every job is done by then: only a slow shutdown waits this long


class Workers:
    """`count` copies of `command`, run from the repository root with output in `log_path`."""

    def __init__(self, command: list[str], count: int, log_path: Path, env: dict[str, str]) -> None:
        self.command = command
        self.count = count
        self.log_path = log_path
        self.env = {**os.environ, **env}
        self.env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(REPO), os.environ.get("PYTHONPATH", "")) if part
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.memory = MemorySampler([])

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            for _ in range(self.count):
                self.procs.append(
                    subprocess.Popen(
                        self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        self.memory = MemorySampler([proc.pid for proc in self.procs])

    def sample_memory(self) -> None:
        self.memory.sample()

    def failure(self) -> str | None:
        """Why a worker is gone too early, or None while all run."""
        for proc in self.procs:
            code = proc.poll()
            if code is not None:
                return f"worker exited early with code {code}; see {self.log_path}"
        return None

    def stop(self) -> None:
        """SIGTERM every worker, then SIGKILL whatever of their trees is left after a while."""
        members = [(pid, start_time(pid)) for proc in self.procs for pid in tree(proc.pid)]
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid, started in members:
            if started is None or start_time(pid) != started:
                continue  # gone (or the pid now belongs to another process)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
