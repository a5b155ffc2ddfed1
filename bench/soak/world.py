"""The processes of one soak run, wired as the chaos suite wires them (tests/chaos/conftest.py):
the jobs' `redis-server` (AOF, everysec), a never-faulted ledger `redis-server`, the fault proxy in
front of the jobs' Redis, and `jobd` daemons that reach Redis through the proxy and write the
ledger (LEDGER_URL). A :class:`Fleet` slot holds one worker at a time; a killed or drained worker
is replaced in its slot by a new process, which counts as a new series for RSS.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.daemon import Daemon, write_config
from tests.support.proxy import ChaosProxy
from tests.support.redis_server import RedisServer

PREFIX = "soak"
LEDGER_KEY = f"{PREFIX}:ledger"
QUEUE = "default"
START_GUARD = 60.0


@dataclass(frozen=True)
class Settings:
    workers: int
    concurrency: int
    lease_timeout: float = 2.0
    drain_timeout: float = 5.0
    keep_result: float = 60.0
    limit_rate: int | None = None
    """With the feature mix: `[limits.rate] rate = "<n>/s"` and `[limits.slots] concurrency` on
    the function `limited`, and the function `emitter` (bench/soak/mix.py)."""
    limit_concurrency: int = 8


@dataclass
class Process:
    """One worker process that ran in a slot."""

    name: str
    daemon: Daemon
    pid: int
    started: float
    ended: float | None = None
    how: str = ""
    """"killed", "terminated" (mid-run SIGTERM) or "stopped" (the final SIGTERM)."""
    exit_code: int | None = None


@dataclass
class Fleet:
    """The workers: `slots[i]` is the process now serving slot i; `processes` every one so far."""

    slots: list[Process] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def live(self) -> list[Process]:
        with self.lock:
            return [p for p in self.slots if p.ended is None]


class World:
    """See the module docstring. `start()` brings everything up; `close()` tears it all down."""

    def __init__(self, root: Path, logs: Path, settings: Settings) -> None:
        self.root = root
        self.logs = logs
        self.settings = settings
        self.redis = RedisServer(root / "redis", appendonly=True, appendfsync="everysec")
        self.ledger_server = RedisServer(root / "ledger", appendonly=False)
        self.proxy: ChaosProxy | None = None
        self.fleet = Fleet()
        self.config: Path | None = None
        self._generations: dict[int, int] = {}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.ledger_server.start()
        self.proxy = ChaosProxy("127.0.0.1", self.redis.port).start()
        s = self.settings
        self.config = write_config(
            self.root, self.proxy.url, PREFIX,
            worker={
                "queues": [QUEUE], "concurrency": s.concurrency,
                "lease_timeout": f"{s.lease_timeout}s", "drain_timeout": f"{s.drain_timeout}s",
            },
            defaults={
                "keep_result": f"{s.keep_result}s",
                "retry": {"base": "10ms", "max": "50ms", "jitter": False},
            },
            functions={"chaos": {"path": "tests.jobs_for_tests:chaos"}, **self._features()},
            limits=self._limits(),
        )  # fmt: skip
        for slot in range(s.workers):
            self.fleet.slots.append(self._spawn(slot))

    def _features(self) -> dict[str, dict[str, object]]:
        if self.settings.limit_rate is None:
            return {}
        return {
            "limited": {"path": "tests.jobs_for_tests:chaos", "limits": ["rate", "slots"]},
            "emitter": {"path": "bench.soak.jobs:emitter"},
        }

    def _limits(self) -> dict[str, dict[str, object]] | None:
        s = self.settings
        if s.limit_rate is None:
            return None
        return {
            "rate": {"rate": f"{s.limit_rate}/s"},
            "slots": {"concurrency": s.limit_concurrency},
        }

    # -- clients ------------------------------------------------------------------------------

    def client(self, timeout: float = 10.0) -> redis.Redis:
        """A direct connection to the jobs' Redis (not through the proxy)."""
        return self.redis.client(socket_timeout=timeout, socket_connect_timeout=timeout)

    def ledger(self) -> redis.Redis:
        return self.ledger_server.client(socket_timeout=30)

    def backlog(self) -> int:
        """Jobs queued, scheduled or running, from the jobs' Redis."""
        base = f"{PREFIX}:{{{QUEUE}}}:"
        with self.client() as conn:
            pipe = conn.pipeline(transaction=False)
            for kind in ("queued", "scheduled", "running"):
                pipe.zcard(base + kind)
            return int(sum(pipe.execute()))

    # -- the fleet ----------------------------------------------------------------------------

    def _spawn(self, slot: int) -> Process:
        generation = self._generations.get(slot, 0)
        self._generations[slot] = generation + 1
        name = f"w{slot + 1}" + (f".{generation}" if generation else "")
        assert self.config is not None
        daemon = Daemon(self.config, ledger_url=self.ledger_server.url, log_dir=self.logs)
        daemon.start().wait_running(START_GUARD)
        process = Process(name, daemon, daemon.pid, time.time())
        with self.fleet.lock:
            self.fleet.processes.append(process)
        return process

    def replace(self, slot: int) -> Process:
        """Start a new worker in `slot` (its previous process has ended)."""
        process = self._spawn(slot)
        with self.fleet.lock:
            self.fleet.slots[slot] = process
        return process

    def kill(self, slot: int) -> Process:
        """SIGKILL the worker in `slot` and reap it; returns it (`ended` is the time of death)."""
        process = self.fleet.slots[slot]
        process.daemon.kill()
        process.ended, process.how = time.time(), "killed"
        process.exit_code = process.daemon.returncode
        return process

    def terminate(self, slot: int, how: str = "terminated") -> tuple[Process, float]:
        """SIGTERM the worker in `slot`, wait for its exit; returns it and the seconds it took."""
        process = self.fleet.slots[slot]
        began = time.monotonic()
        process.daemon.signal(signal.SIGTERM)
        took = _exited([process.daemon], began)[0]
        process.exit_code = process.daemon.wait_exit(START_GUARD)
        process.ended, process.how = time.time(), how
        return process, took

    def stop_all(self) -> list[float]:
        """SIGTERM every live worker at once; the seconds each took to exit."""
        live = [p for p in self.fleet.slots if p.ended is None]
        began = time.monotonic()
        for process in live:
            process.daemon.signal(signal.SIGTERM)
        took = _exited([p.daemon for p in live], began)
        for process in live:
            process.exit_code = process.daemon.wait_exit(START_GUARD)
            process.ended, process.how = time.time(), "stopped"
        return took

    def heal(self) -> None:
        """Undo any fault left on: Redis resumed, the proxy passing."""
        self.redis.resume()
        if self.proxy is not None:
            self.proxy.set_mode("pass")

    def close(self) -> None:
        for process in self.fleet.processes:
            with contextlib.suppress(Exception):
                process.daemon.close()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.close()
        for server in (self.redis, self.ledger_server):
            with contextlib.suppress(Exception):
                server.close()


def _exited(daemons: list[Daemon], began: float) -> list[float]:
    """Poll every 5 ms until each daemon's process has ended: seconds from `began` to each exit
    (the guard's length for one still running after it; wait_exit then reports it)."""
    took: list[float | None] = [None] * len(daemons)
    while any(t is None for t in took) and time.monotonic() - began < START_GUARD:
        for i, daemon in enumerate(daemons):
            if took[i] is None and not daemon.running:
                took[i] = time.monotonic() - began
        time.sleep(0.005)
    return [START_GUARD if t is None else t for t in took]
