"""A private `redis-server` for the benchmark: free port, no persistence, its own tmp dir.

The binary is `redis-server` from PATH, or the one named by JOBD_REDIS_SERVER (as in the tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_py

START_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """`with RedisServer() as server:` starts redis-server and stops it (and its files) on exit."""

    def __init__(self) -> None:
        self.binary = os.environ.get("JOBD_REDIS_SERVER") or shutil.which("redis-server")
        if not self.binary:
            raise SystemExit("redis-server not found: install it or set JOBD_REDIS_SERVER")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobd-bench-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"), "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis_py.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"redis-server did not start; see {self.dir}/redis.log"
                    ) from None
                time.sleep(0.05)

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, lib_name=None, lib_version=None)

    def version(self) -> str:
        with self.client() as client:
            return str(client.info("server")["redis_version"])

    def reset(self) -> None:
        """Before each step: no data, no scripts, fresh statistics."""
        with self.client() as client:
            client.flushall()
            client.script_flush()
            client.config_resetstat()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
