"""A private sd_notify socket per worker: the workers tell the supervisor what they would tell systemd.

A supervised worker's NOTIFY_SOCKET names a datagram socket of the supervisor's (an abstract one on
Linux, a file in a private directory elsewhere), so the daemon's ordinary notifications (READY=1,
STATUS=, WATCHDOG=1, STOPPING=1) and its probe port (X_JOBD_HTTP_PORT=) reach the supervisor, which
alone talks to systemd. One socket per worker process: the sender needs no credentials to be known.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable

MAX_DATAGRAM = 4096


def parse(datagram: bytes) -> dict[str, str]:
    """`KEY=VALUE` lines of one notification (malformed lines are ignored, as systemd does)."""
    fields = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


class NotifySocket:
    """One bound datagram socket; `address` is what the worker gets as NOTIFY_SOCKET."""

    def __init__(self, directory: str | None) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._path: str | None = None
        name = f"jobd-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        if sys.platform == "linux":
            self._socket.bind("\0" + name)
            self.address = "@" + name
        else:
            self._path = os.path.join(directory or tempfile.gettempdir(), name + ".sock")
            self._socket.bind(self._path)
            self.address = self._path
        self._socket.setblocking(False)

    def fileno(self) -> int:
        return self._socket.fileno()

    def read(self, handle: Callable[[dict[str, str]], None]) -> None:
        """Hand every waiting notification to `handle` (called when the socket is readable)."""
        while True:
            try:
                datagram = self._socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            handle(parse(datagram))

    def close(self) -> None:
        self._socket.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
