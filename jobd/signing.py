"""Signed jobs: an HMAC-SHA256 over a job's id, queue, function name, payload bytes and headers
(the trace context, when the job has one), made by the producer and checked by the worker before
it decodes anything.

Anyone who can write to Redis can forge a job; with `worker.signing_key` set, a worker runs only
jobs signed with that key. Binding the signature to the job id and queue means a valid payload
copied to another id or queue, or given to another function, is refused too. Not covered: the same
job (same id, queue, function and payload) written again after it ran — keep Redis private as well.

Used by the producer client and the worker alike: standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SIGNING_KEY_ENV = "JOBD_SIGNING_KEY"
"""Producers sign with the key in this environment variable unless given one."""
_SCHEME = b"v1:"
_CONTEXT = b"jobd job signature v1"


def key_bytes(key: str | bytes | None) -> bytes | None:
    """The key as bytes; None (or empty) means "do not sign"."""
    if not key:
        return None
    return key if isinstance(key, bytes) else key.encode()


def key_from_environment() -> bytes | None:
    return key_bytes(os.environ.get(SIGNING_KEY_ENV))


def _message(job_id: str, queue: str, function: str, payload: bytes, headers: bytes) -> bytes:
    # Each part is length-prefixed, so no two different jobs can produce the same message. The
    # headers (trace context) count only when a job has them: older signatures stay valid.
    parts = [_CONTEXT, job_id.encode(), queue.encode(), function.encode(), payload]
    if headers:
        parts.append(headers)
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


def sign(
    key: bytes, job_id: str, queue: str, function: str, payload: bytes, headers: bytes = b""
) -> bytes:
    """The signature stored with the job (ASCII, versioned)."""
    digest = hmac.new(key, _message(job_id, queue, function, payload, headers), hashlib.sha256)
    return _SCHEME + digest.hexdigest().encode()


def signature_problem(
    key: bytes,
    signature: bytes | None,
    job_id: str,
    queue: str,
    function: str,
    payload: bytes,
    headers: bytes = b"",
) -> str | None:
    """None when `signature` is this job's, else why not (never shows the expected signature)."""
    if not signature:
        return "the job carries no signature"
    expected = sign(key, job_id, queue, function, payload, headers)
    if hmac.compare_digest(signature, expected):
        return None
    return (
        "the signature does not match this job's id, queue, function and arguments "
        "(forged, copied from another job, or signed with another key)"
    )
