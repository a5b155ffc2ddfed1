"""systemd's notify protocol (Type=notify) without a dependency: datagrams to $NOTIFY_SOCKET.
Does nothing when NOTIFY_SOCKET is unset, so the daemon behaves the same outside systemd."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping

logger = logging.getLogger("jobd.systemd")

SUPERVISOR_ENV = "JOBD_SUPERVISOR"
"""Set (to its pid) by `jobd --processes N` for its workers, whose NOTIFY_SOCKET is then the
supervisor's own socket for that worker, not systemd's (jobd.supervisor)."""
HTTP_PORT_FIELD = "X_JOBD_HTTP_PORT"
"""The notification a supervised worker sends with its private probe port (systemd's convention
for fields of one's own: an X_ prefix)."""


class Notifier:
    """Sends READY=1, STATUS=…, WATCHDOG=1, STOPPING=1, EXTEND_TIMEOUT_USEC=… to systemd."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written "@name" and addressed with a leading NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        if self.address and usec.isdigit() and int(usec) > 0:
            self.watchdog_interval = int(usec) / 1_000_000 / 2
        self._socket: socket.socket | None = None
        self.supervised = bool(self.address) and SUPERVISOR_ENV in environ

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> None:
        """Send one notification; failures are logged, never raised (systemd is advisory)."""
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            logger.warning("could not notify systemd at %s: %s", self.address.lstrip("\0"), error)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def http_port(self, port: int) -> None:
        """Tell a supervisor where this worker serves its probes; nothing is sent to systemd."""
        if self.supervised:
            self.send(f"{HTTP_PORT_FIELD}={port}")

    def stopping(self, drain_seconds: float) -> None:
        """Draining starts: tell systemd, and ask for the drain time on top of its stop timeout."""
        extend = int((drain_seconds + 15) * 1_000_000)
        self.send("STOPPING=1", f"EXTEND_TIMEOUT_USEC={extend}", "STATUS=draining")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def watchdog(self) -> None:
        """Ping WATCHDOG=1 at half of WATCHDOG_USEC from the event loop: a blocked loop stops the
        pings, and systemd restarts the service."""
        if self.watchdog_interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)  # the protocol's own period
