"""The probe and metrics endpoints (/healthz, /readyz, /metrics), served from a thread of their own:
a blocked event loop must be reported as 503, not as silence. Nothing else is served."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from jobd.errors import ConfigError
from jobd.ops.health import Health

if TYPE_CHECKING:
    from jobd.ops.metrics import Metrics

logger = logging.getLogger("jobd.http")

REQUEST_TIMEOUT_SECONDS = 10.0
"""How long a connection may take to send its request line and headers."""


class ProbeHandler(BaseHTTPRequestHandler):
    """What every jobd probe endpoint shares (a worker's, and the supervisor's for its group):
    GET only (any other method, made-up ones too, is 405, not the stdlib's 501), one reply per
    connection, and request lines logged at debug level. Subclasses write do_GET."""

    server_version = "jobd"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_SECONDS  # a client that sends nothing does not keep its thread

    def _not_allowed(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET is served\n", allow=True)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _reply(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        allow: bool = False,
    ) -> None:
        # A request body is never read: close the connection instead of draining it.
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if allow:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _Handler(ProbeHandler):
    server: _Server

    def do_GET(self) -> None:
        health = self.server.health
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if health.alive():
                self._reply(HTTPStatus.OK, b"ok\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"event loop blocked\n")
        elif path == "/readyz":
            if health.ready and health.alive():
                self._reply(HTTPStatus.OK, b"ready\n")
            else:
                reason = health.reason if health.alive() else "event loop blocked"
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}\n".encode())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            self._reply(HTTPStatus.OK, self.server.metrics.render(), CONTENT_TYPE_LATEST)
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: try /healthz, /readyz or /metrics\n")


class ProbeServer(ThreadingHTTPServer):
    """A threading HTTP server for probe handlers, on IPv4 or IPv6, that never waits for its
    request threads on close."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class ServerThread:
    """Serves the ProbeServer that `bind` makes from a daemon thread until `close()`; `what`
    completes the log line ("", " for the group")."""

    def __init__(self, listen: str, bind: Callable[[], ProbeServer], what: str = "") -> None:
        try:
            self._server = bind()
        except OSError as error:
            raise ConfigError(
                [f"http.listen: cannot listen on {listen}: {error.strerror or error}"]
            ) from None
        self._what = what
        # shutdown() waits for the serving loop's next poll: 0.1 s keeps an idle worker's exit on
        # SIGTERM quick (the default 0.5 s was most of it, found by bench/soak)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="jobd-http",
            daemon=True,
        )  # fmt: skip

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        host = str(self._server.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        logger.info(
            "http: serving /healthz /readyz /metrics%s on http://%s:%d",
            self._what,
            shown,
            self.port,
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ProbeServer):
    def __init__(self, address: tuple[str, int], health: Health, metrics: Metrics) -> None:
        self.health = health
        self.metrics = metrics
        super().__init__(address, _Handler)


class HttpServer(ServerThread):
    """Serves the endpoints on `host:port` from a daemon thread until `close()`."""

    def __init__(self, host: str, port: int, listen: str, health: Health, metrics: Metrics) -> None:
        super().__init__(listen, lambda: _Server((host, port), health, metrics))
