"""`jobd web`: the dashboard (jobd.web) served standalone by uvicorn, on the Redis of the
configuration (`redis.url = "embedded"` included: the server the running worker started).

It listens on 127.0.0.1:9181 unless told otherwise. On any other address it asks for HTTP basic
auth, with the password from JOBD_WEB_PASSWORD (user JOBD_WEB_USER, default "admin"), and refuses
to start without one (exit 78); the password, when set, is asked for on loopback too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys

from jobd.cli.shared import UsageError
from jobd.config.settings import Settings
from jobd.errors import ConfigError
from jobd.redis.embedded import client_url

DEFAULT_LISTEN = "127.0.0.1:9181"
PASSWORD_VARIABLE = "JOBD_WEB_PASSWORD"
USER_VARIABLE = "JOBD_WEB_USER"
DEFAULT_USER = "admin"
WEB_TIMEOUT = 10.0
"""Socket timeout of the dashboard's Redis client, seconds: above the event view's blocking reads."""
INSTALL_HINT = "the dashboard needs the web extra: pip install 'jobd[web]'"

logger = logging.getLogger("jobd.web")


def parse_listen(text: str) -> tuple[str, int]:
    """ "host:port" (IPv6 in brackets: "[::1]:9181") as (host, port)."""
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:9181")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for basic auth, from the environment; ConfigError when listening beyond
    loopback without a password."""
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if password:
        return os.environ.get(USER_VARIABLE, "") or DEFAULT_USER, password
    if not is_loopback(host):
        raise ConfigError(
            [
                f"jobd web: listening on {host} (not loopback) needs HTTP basic auth: set "
                f"{PASSWORD_VARIABLE} (and {USER_VARIABLE}, default {DEFAULT_USER!r}) in the "
                "environment, or listen on 127.0.0.1 and reach it through SSH or a proxy"
            ]
        )
    return None


def serve(settings: Settings, *, listen: str | None, read_only: bool) -> int:
    """`jobd web`: serve the dashboard until SIGINT / SIGTERM."""
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    auth = credentials(host)
    try:
        import uvicorn

        from jobd.web import create_app
    except ImportError as error:
        raise ConfigError([f"jobd web: {INSTALL_HINT} ({error})"]) from None
    from jobd.client import Client

    url = client_url(settings)  # the embedded server's, found through its data dir

    async def run() -> None:
        client = Client(
            url,
            key_prefix=settings.redis.key_prefix,
            default_queue=settings.worker.queues[0] if settings.worker.queues else "default",
            max_payload_bytes=settings.worker.max_payload_bytes,
            socket_timeout=min(settings.redis.socket_timeout, WEB_TIMEOUT),
            connect_timeout=min(settings.redis.connect_timeout, WEB_TIMEOUT),
        )
        try:
            await client.redis.ping()  # a wrong URL or password: one line and an exit code now
            app = create_app(client, read_only=read_only, settings=settings, credentials=auth)
            config = uvicorn.Config(
                app, host=host, port=port, log_config=None, lifespan="off", access_log=False,
                timeout_graceful_shutdown=5, server_header=False,
            )  # fmt: skip
            shown = f"[{host}]" if ":" in host else host
            logger.info(
                "dashboard of %s (key prefix %s)%s%s: http://%s:%s/",
                "the embedded Redis" if settings.redis.embedded else settings.redis.redacted_url(),
                settings.redis.key_prefix, ", read-only" if read_only else "",
                f", basic auth as {auth[0]!r}" if auth else "", shown, port,
            )  # fmt: skip
            await uvicorn.Server(config).serve()
        finally:
            await client.close()

    asyncio.run(run())
    sys.stdout.flush()
    return 0
