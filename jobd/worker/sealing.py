"""Encrypted jobs on the worker's side (docs/encryption.md): a job whose payload came encrypted is
decrypted before anything of it is decoded, and everything the worker stores for it afterwards
(its result, the message and traceback of its errors, its event data) is encrypted under the
key it came with, so that whoever could enqueue it can read its answer. A plain job stays plain.

A job the worker cannot decrypt (no key with its key id, or a ciphertext not made for this job)
fails for good with `DecryptError` (dead-letter reason "decrypt") naming the key id it needs, and
its function is never called."""

from __future__ import annotations

import asyncio

from jobd import crypto
from jobd.errors import DecryptError
from jobd.model import ErrorInfo
from jobd.worker.runner import OFF_LOOP_DECODE_BYTES, ClaimedJob, Outcome, Result

DEAD_REASON = "decrypt"
"""The dead-letter reason (metric label) of a job the worker cannot decrypt."""


async def unseal(job: ClaimedJob, keys: crypto.Keys | None) -> Result | None:
    """Decrypt `job`'s payload in place and set `job.seal` when it came encrypted; None when the job
    can run, else its final failure. Large payloads are decrypted off the event loop."""
    if not crypto.is_encrypted(job.payload):
        return None
    ident = crypto.envelope_key_id(job.payload)
    seal = crypto.JobSeal(keys, job.id, job.queue, job.function, ident)
    try:
        if keys is not None and not keys.has(ident):
            raise crypto.missing_key(f"the payload of job {job.id}", ident, keys)
        if len(job.payload) > OFF_LOOP_DECODE_BYTES:
            plain = await asyncio.to_thread(seal.open, job.payload, crypto.PAYLOAD)
        else:
            plain = seal.open(job.payload, crypto.PAYLOAD)
    except DecryptError as error:
        message = str(error)
        if error.missing:
            message += "; add that key to worker.encryption_keys (docs/encryption.md)"
        return Result(Outcome.FAILED, error=ErrorInfo("DecryptError", message), final=True)
    job.payload = plain
    job.seal = seal
    return None


def seal_result(job: ClaimedJob, value: bytes) -> bytes:
    """The result as stored: encrypted when the job came encrypted."""
    return value if job.seal is None else job.seal.seal(value, crypto.RESULT)


def seal_event(job: ClaimedJob, event: str, data: str) -> str:
    """An event's encoded data as stored: encrypted when the job came encrypted."""
    if job.seal is None or not data:
        return data
    return job.seal.seal_text(data, crypto.event_part(event))
