"""Run the real ``jobd`` daemon as a subprocess for system tests.

A :class:`Daemon` runs ``python -m jobd --config FILE ...`` from the repository root (so that
``tests.jobs_for_tests:record`` imports), with stdout and stderr going to a log file that the test
reads (``log_text()``, ``wait_for_log()``). Teardown (``close()``, the context manager, or an
``atexit`` hook as a last resort) kills whatever is still running. ``http_port()`` reads the
probe port from the startup log line, ``get()`` and ``http()`` call the probe endpoints.

:func:`write_config` writes a ``jobs.toml`` with short test settings and every function of
``tests.jobs_for_tests`` registered under its own name.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import tomli_w

from tests.support.wait import wait_until
from tests.support.worker import TEST_FUNCTIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 20.0


_LIVE: set[Daemon] = set()
_COUNTER = itertools.count(1)
_HTTP_LINE = re.compile(
    r"http: serving [^\n]*? on http://(?P<host>\[[^\]]+\]|[^:\s\"]+):(?P<port>\d+)"
)
"""The daemon's startup line naming its probe address (in text and JSON log formats alike)."""


def write_config(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    *,
    filename: str = "jobs.toml",
    **sections: Mapping[str, Any] | list[dict[str, Any]] | None,
) -> Path:
    """Write a jobs.toml for tests and return its path.

    Defaults: queue "default", concurrency 10, ``lease_timeout = "1s"``, ``drain_timeout = "2s"``,
    HTTP on a free port, every function of ``tests.jobs_for_tests``. Each keyword names a top-level
    table whose keys are merged over the defaults (``worker={"drain_timeout": "0.5s"}`` changes that
    key only); ``None`` removes the table.
    """
    document: dict[str, Any] = {
        "redis": {"url": redis_url, "key_prefix": key_prefix},
        "worker": {
            "queues": ["default"],
            "concurrency": 10,
            "lease_timeout": "1s",
            "drain_timeout": "2s",
        },
        "http": {"listen": "127.0.0.1:0"},
        "functions": {name: {"path": f"tests.jobs_for_tests:{name}"} for name in TEST_FUNCTIONS},
    }
    for name, table in sections.items():
        if table is None:
            document.pop(name, None)
        elif isinstance(table, list):
            document[name] = list(table)  # an array of tables, like [[cron]]
        elif isinstance(document.get(name), dict):
            document[name] = {**document[name], **table}
        else:
            document[name] = dict(table)
    path = tmp_path / filename
    path.write_text(tomli_w.dumps(document))
    return path


class Daemon:
    """One ``jobd`` daemon subprocess; see the module docstring."""

    def __init__(
        self,
        config: Path | str | None,
        *args: str,
        ledger_url: str | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        cwd: Path = REPO_ROOT,
        command: Sequence[str] | None = None,
    ) -> None:
        """``args`` follow ``--config FILE`` (e.g. ``"--burst"``, ``"--log-level", "debug"``);
        ``command`` replaces the default ``[python, -m, jobd]`` prefix; ``config=None`` omits
        ``--config``."""
        self.config = Path(config) if config is not None else None
        self.args = tuple(args)
        self.cwd = cwd
        prefix = list(command) if command is not None else [sys.executable, "-m", "jobd"]
        self.argv = [*prefix, *(["--config", str(self.config)] if self.config else []), *self.args]
        self.env = dict(os.environ)
        self.env.pop("JOBD_CONFIG", None)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        if ledger_url is not None:
            self.env["LEDGER_URL"] = ledger_url
        if env:
            self.env.update(env)
        if log_dir is None:
            log_dir = Path(tempfile.mkdtemp(prefix="jobd-daemon-"))
        self.log_path = log_dir / f"daemon-{next(_COUNTER)}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._http_address: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"<Daemon pid={self.pid} rc={self.returncode} log={self.log_path}>"

    # -- lifecycle --------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the daemon was not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError(f"{self!r} was already started")
        with self.log_path.open("ab") as sink:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
            )
        _LIVE.add(self)
        return self

    def wait_running(self, timeout: float = START_TIMEOUT) -> Self:
        """Wait until the worker logs that it takes jobs (``worker <id>: running``)."""
        self.wait_for_log(": running", timeout)
        return self

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``text`` appears in the log; fails at once if the daemon exits first."""

        def seen() -> bool:
            if text in self.log_text():
                return True
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(
                    f"jobd exited with {self._proc.returncode} before logging {text!r}:\n"
                    f"{self.log_text()}"
                )
            return False

        wait_until(seen, timeout, interval=0.02, message=f"{text!r} in the log of {self!r}")

    def signal(self, sig: int) -> None:
        if self._proc is None:
            raise RuntimeError("the daemon was not started")
        os.kill(self._proc.pid, sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and reap the process."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self.returncode = self._proc.wait()
        _LIVE.discard(self)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the process to end and return its exit code (negative: killed by a signal)."""
        if self._proc is None:
            raise RuntimeError("the daemon was not started")
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"jobd still running after {timeout:g}s:\n{self.log_text()}"
            ) from None
        _LIVE.discard(self)
        return self.returncode

    def close(self) -> None:
        """Teardown: kill the process if it still runs (a stopped one gets SIGCONT first)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGCONT)
        self.kill()

    # -- HTTP probes ------------------------------------------------------------------
    def http_address(self, timeout: float = START_TIMEOUT) -> tuple[str, int]:
        """(host, port) of /healthz, /readyz and /metrics, from the ``http: serving … on
        http://HOST:PORT`` log line (waited for; the host keeps its IPv6 brackets)."""
        if self._http_address is None:
            self.wait_for_log("http: serving", timeout)
            match = _HTTP_LINE.search(self.log_text())
            if match is None:
                raise AssertionError(f"no http address in the log of {self!r}:\n{self.log_text()}")
            self._http_address = (match["host"], int(match["port"]))
        return self._http_address

    def http_port(self, timeout: float = START_TIMEOUT) -> int:
        """The port of the probe endpoints (``http.listen = "127.0.0.1:0"`` picks a free one)."""
        return self.http_address(timeout)[1]

    def http(
        self, method: str, path: str, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to the probe server: (status, headers, body); 4xx/5xx are returned too."""
        host, port = self.http_address()
        request = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET ``path`` from the probe server: (status, body)."""
        status, _, body = self.http("GET", path, timeout)
        return status, body

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort: never leave a daemon behind when the interpreter exits."""
    for daemon in list(_LIVE):
        with contextlib.suppress(Exception):
            daemon.close()
