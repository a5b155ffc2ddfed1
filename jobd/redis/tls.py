"""Telling TLS mistakes apart from outages, so that they stop the worker with a message that says
what to change (exit 78) instead of an endless reconnect loop.

A certificate that fails verification shows in the error redis-py raises. The other mistakes do
not: a plain client talking to a TLS port, or a TLS client without the client certificate Redis
demands, both end in "connection reset", like a restart would. `diagnose` finds out by asking the
server directly: does it answer a TLS handshake, and what does it say to ours?

Standard library only: the producer client uses `tls_problem` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

_CERT_REQUIRED = (
    "Redis requires a client certificate (tls-auth-clients): add ssl_certfile= and ssl_keyfile= "
    "to redis.url"
)
_CA_HINT = (
    "check ssl_ca_certs= in redis.url: it must name the CA that signed the server certificate"
)
_STRICT_HINT = (
    "the certificates lack an extension that strict verification asks for (Python 3.13 and newer "
    "verify with ssl.VERIFY_X509_STRICT): re-issue the CA certificate with a critical "
    "basicConstraints CA:TRUE, keyUsage keyCertSign and a subjectKeyIdentifier, and the server "
    "certificate with an authorityKeyIdentifier"
)
_STRICT_FAILURES = (
    "key usage",
    "key identifier",
    "not marked critical",
    "require at least x509v3",
    "subject alternative name extension",
)
"""OpenSSL's verify messages for what only strict mode refuses ("CA cert does not include key
usage extension", "Missing Authority Key Identifier", ...): a CA that older Pythons accepted."""


def tls_problem(error: BaseException) -> str | None:
    """What to change, if `error` (or an error it wraps) is a TLS configuration mistake."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        message = _ssl_message(current)
        if message is not None:
            return message
        current = current.__cause__ or current.__context__
    return None


def _ssl_message(error: BaseException) -> str | None:
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = str(getattr(error, "verify_message", None) or error)
        hint = _STRICT_HINT if any(s in detail.lower() for s in _STRICT_FAILURES) else _CA_HINT
        return f"certificate verify failed: {hint} ({detail})"
    if not isinstance(error, ssl.SSLError):
        return None
    reason = _reason(error)
    if "CERTIFICATE_REQUIRED" in reason:
        return _CERT_REQUIRED
    if any(word in reason for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (
            "Redis refused the client certificate (ssl_certfile= in redis.url): it is not signed "
            f"by a CA that Redis trusts ({reason.lower()})"
        )
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
        return "Redis does not use TLS on this port: use redis:// instead of rediss://"
    return None


def _reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason code ("CERTIFICATE_VERIFY_FAILED"), or the message when there is none."""
    return str(getattr(error, "reason", None) or error).upper()


def _context(query: Mapping[str, list[str]]) -> ssl.SSLContext:
    """An SSL context like the one redis-py builds from the same rediss:// query."""

    def value(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    context = ssl.create_default_context(cafile=value("ssl_ca_certs"))
    certfile = value("ssl_certfile")
    if certfile:
        context.load_cert_chain(certfile, value("ssl_keyfile"), value("ssl_password"))
    reqs = (value("ssl_cert_reqs") or "required").lower()
    check_hostname = (value("ssl_check_hostname") or "true").lower() not in ("false", "0", "no")
    context.check_hostname = check_hostname and reqs != "none"
    if reqs == "none":
        context.verify_mode = ssl.CERT_NONE
    elif reqs == "optional":
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def _connect(
    host: str, port: int, context: ssl.SSLContext | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection (with TLS and its handshake if `context`)."""
    async with asyncio.timeout(timeout):
        return await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None
        )


async def _ping(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
) -> bytes:
    """Send PING, return the first bytes of the answer (b"" if the server hung up); closes."""
    try:
        async with asyncio.timeout(timeout):
            writer.write(b"PING\r\n")
            await writer.drain()
            return await reader.read(64)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def diagnose(url: str, timeout: float) -> str | None:
    """Ask the server behind `url` whether a TLS mistake keeps us out; None when it is not one
    (or the server cannot be reached at all: that is an outage, not a mistake)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or 6379
    except ValueError:
        return None
    if parts.scheme == "redis":
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        try:
            _, writer = await _connect(host, port, insecure, timeout)
        except (OSError, TimeoutError):
            return None  # no TLS handshake: not a TLS port (or not reachable)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return "Redis requires TLS: use rediss:// (with ssl_ca_certs= naming its CA)"
    if parts.scheme != "rediss":
        return None
    query = parse_qs(parts.query)
    try:
        context = _context(query)
    except (OSError, ValueError) as error:
        return f"the TLS files in redis.url cannot be loaded: {error}"
    try:
        reader, writer = await _connect(host, port, context, timeout)
    except ssl.SSLError as error:
        message = _ssl_message(error)
        if message is not None:
            return message
    except (OSError, TimeoutError):
        pass
    else:
        return await _after_handshake(reader, writer, timeout, "ssl_certfile" in query)
    # No handshake: a plain Redis waits for a command line that never comes, or answers an error.
    try:
        answer = await _ping(*await _connect(host, port, None, timeout), timeout)
    except (OSError, TimeoutError):
        return None
    if answer[:1] in (b"+", b"-"):
        return "Redis does not use TLS on this port: use redis:// instead of rediss://"
    return None


async def _after_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float, has_cert: bool
) -> str | None:
    """The TLS handshake worked. With TLS 1.3 the server checks the client certificate only after
    it: hanging up on our PING (with an alert, or without a word) means it refused ours."""
    try:
        answer = await _ping(reader, writer, timeout)
    except ssl.SSLError as error:
        message = _ssl_message(error)
        if message is not None:
            return message
        answer = b""
    except (OSError, TimeoutError):
        answer = b""
    if answer:
        return None  # TLS works; whatever failed was not TLS
    if not has_cert:
        return _CERT_REQUIRED
    return (
        "Redis refused the client certificate (ssl_certfile= in redis.url): it is not signed by "
        "a CA that Redis trusts"
    )
