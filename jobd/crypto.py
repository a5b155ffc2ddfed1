"""Encrypted payloads (docs/encryption.md): a job's arguments, its result, the message and
traceback of its errors and the data of its events, stored in Redis as AES-256-GCM ciphertext
that only holders of the key can read.

A key is 32 random bytes written as URL-safe base64 (`new_key`, `jobd keygen`). `Keys` holds the
configured keys in order: the first encrypts, every one decrypts (rotation). Each value is bound
to its job's id, queue and function and to its field ("payload", "result" …) as associated data,
so a ciphertext copied to another job or field does not decrypt. It is stored as an ASCII
envelope, `jobd-enc:v1:<key id>:<base64 of nonce + ciphertext>`, which tells readers that a value
is encrypted and which key it needs; the key id is the first 8 hex digits of the SHA-256 of the
key, never the key.

Used by the producer client and the worker alike. Importing this module loads the standard library
only; `cryptography` (the `jobd[crypto]` extra) is imported when keys are made, so producers and
workers without keys never load it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from jobd.errors import ConfigError, DecryptError

ENCRYPTION_KEYS_ENV = "JOBD_ENCRYPTION_KEYS"
"""Producers encrypt with the keys in this environment variable (comma-separated) unless given
keys."""
EXTRA = "pip install 'jobd[crypto]'"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_DIGITS = 8
MARK = b"jobd-enc:"
"""What every encrypted value starts with (no JSON text does)."""
_VERSION = b"v1:"
_CONTEXT = b"jobd encrypted value v1"
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=?")
KEY_RULE = "not a 32-byte URL-safe base64 key (make one with `jobd keygen`)"

PAYLOAD = "payload"
RESULT = "result"
ERROR_MESSAGE = "error.message"
ERROR_TRACEBACK = "error.traceback"


def event_part(name: str) -> str:
    """The field name that binds the data of an event called `name` (progress: "event:progress")."""
    return "event:" + name


def new_key() -> str:
    """A new random key, as `jobd keygen` prints it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def parse_key(text: str | bytes) -> bytes:
    """The 32 bytes of a key written as URL-safe base64 (padding optional, whitespace around it
    ignored); raw 32 bytes are taken as they are. ValueError(KEY_RULE) otherwise (the value is
    never part of the message)."""
    if isinstance(text, bytes):
        if len(text) == KEY_BYTES:
            return text
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(KEY_RULE) from None
    text = text.strip()
    if not _KEY_TEXT.fullmatch(text):
        raise ValueError(KEY_RULE)
    return base64.urlsafe_b64decode(text.rstrip("=") + "=")


def key_id(key: bytes) -> str:
    """The short id stored with each value a key encrypts: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:KEY_ID_DIGITS]


def is_encrypted(value: bytes | str | None) -> bool:
    """Whether a stored value is an encrypted envelope."""
    if isinstance(value, str):
        return value.startswith("jobd-enc:")
    return value is not None and value.startswith(MARK)


def envelope_key_id(value: bytes | str) -> str | None:
    """The key id an envelope names (None if it names none it could have)."""
    data = value.encode() if isinstance(value, str) else value
    parts = data.split(b":", 3)
    if len(parts) != 4 or parts[1] + b":" != _VERSION or not _is_key_id(parts[2]):
        return None
    return parts[2].decode()


def _is_key_id(value: bytes) -> bool:
    return len(value) == KEY_ID_DIGITS and all(c in b"0123456789abcdef" for c in value)


def sealed_size(size: int) -> int:
    """The stored size of a value of `size` bytes once encrypted (the envelope and base64)."""
    raw = NONCE_BYTES + size + TAG_BYTES
    return len(MARK + _VERSION) + KEY_ID_DIGITS + 1 + 4 * ((raw + 2) // 3)


def _associated(job_id: str, queue: str, function: str, part: str) -> bytes:
    # Length-prefixed, so no two different bindings give the same bytes.
    parts = [_CONTEXT, *(text.encode(errors="backslashreplace") for text in (job_id, queue))]
    parts += [function.encode(errors="backslashreplace"), part.encode()]
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


class _Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def cryptography_missing() -> str | None:
    """Why keys cannot be used here (the cryptography package is missing), or None. Looks the
    package up without importing it."""
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:
        return f"needs the cryptography package: {EXTRA}"
    return None


class Keys:
    """The configured keys, in order: the first encrypts, every one decrypts. Its repr shows key
    ids only. Making one imports `cryptography` (ConfigError naming the extra without it)."""

    __slots__ = ("_aeads", "_invalid_tag", "ids")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("Keys needs at least one key")
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigError(
                [f"encryption keys are configured: they need the cryptography package: {EXTRA}"]
            ) from None
        self._invalid_tag = InvalidTag
        self.ids: tuple[str, ...] = tuple(key_id(key) for key in keys)
        """The key ids, in order (the first is the id of the key that encrypts)."""
        aeads: dict[str, _Aead] = {}
        for ident, key in zip(self.ids, keys, strict=True):
            if len(key) != KEY_BYTES:
                raise ValueError(KEY_RULE)
            aeads.setdefault(ident, AESGCM(key))
        self._aeads = aeads

    def __repr__(self) -> str:
        return f"Keys(ids={list(self.ids)!r})"

    def has(self, ident: str | None) -> bool:
        return ident in self._aeads

    def encrypt(
        self,
        plaintext: bytes,
        *,
        job_id: str,
        queue: str,
        function: str,
        part: str,
        key_id: str | None = None,
    ) -> bytes:
        """The envelope of `plaintext`, bound to the job and `part`; with the first key, or the
        configured key `key_id` (a worker answers a job in the key it came with)."""
        ident = key_id or self.ids[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[ident].encrypt(
            nonce, plaintext, _associated(job_id, queue, function, part)
        )
        return MARK + _VERSION + ident.encode() + b":" + base64.urlsafe_b64encode(nonce + sealed)

    def decrypt(
        self, envelope: bytes, *, job_id: str, queue: str, function: str, part: str
    ) -> bytes:
        """The plaintext of an envelope made for this job and `part`; DecryptError naming the key
        id it needs otherwise."""
        ident = envelope_key_id(envelope)
        what = f"the {part} of job {job_id}"
        if ident is None:
            raise DecryptError(f"{what} is not a valid encrypted value (jobd-enc:v1:<key id>:…)")
        aead = self._aeads.get(ident)
        if aead is None:
            raise missing_key(what, ident, self)
        try:
            raw = base64.urlsafe_b64decode(envelope.split(b":", 3)[3])
        except (binascii.Error, ValueError):
            raw = b""
        try:
            if len(raw) < NONCE_BYTES + TAG_BYTES:
                raise ValueError("too short")
            return aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(job_id, queue, function, part)
            )
        except (self._invalid_tag, ValueError):
            raise DecryptError(
                f"{what} cannot be decrypted with key {ident}: it was not encrypted for this "
                "job's id, queue, function and field (copied from another job or field, or "
                "changed in Redis)",
                key_id=ident,
            ) from None


def missing_key(what: str, ident: str | None, keys: Keys | None) -> DecryptError:
    """The error of a value encrypted with key `ident`, which `keys` do not hold."""
    have = f"configured: {', '.join(keys.ids)}" if keys is not None else "none configured"
    return DecryptError(
        f"{what} is encrypted with key {ident}, which is not among the encryption keys ({have})",
        key_id=ident,
        missing=True,
    )


def keys_from(values: Iterable[str | bytes], source: str) -> Keys | None:
    """Keys from their texts (empty ones skipped); None when there are none. ConfigError naming
    the position of each malformed one (`source[1]`), never its value."""
    keys: list[bytes] = []
    problems: list[str] = []
    for index, value in enumerate(values):
        if not value or (isinstance(value, str) and not value.strip()):
            continue
        try:
            keys.append(parse_key(value))
        except ValueError:
            problems.append(f"{source}[{index}]: {KEY_RULE}")
    if problems:
        raise ConfigError(problems)
    return Keys(keys) if keys else None


def keys_from_environment() -> Keys | None:
    """The keys of JOBD_ENCRYPTION_KEYS (comma-separated), or None when it is unset or empty."""
    return keys_from(os.environ.get(ENCRYPTION_KEYS_ENV, "").split(","), ENCRYPTION_KEYS_ENV)


def producer_keys(encryption_keys: Iterable[str | bytes] | str | None) -> Keys | None:
    """A producer's keys: those given (a string: comma-separated), else JOBD_ENCRYPTION_KEYS.
    An empty list turns encryption off."""
    if encryption_keys is None:
        return keys_from_environment()
    if isinstance(encryption_keys, str):
        return keys_from(encryption_keys.split(","), "encryption_keys")
    return keys_from(encryption_keys, "encryption_keys")


@dataclass(frozen=True, slots=True)
class JobSeal:
    """The encrypted fields of one job: the keys, and the job they are bound to. `key_id` is the
    key its payload came with, which the worker answers in (None: the first key)."""

    keys: Keys | None
    job_id: str
    queue: str
    function: str
    key_id: str | None = None

    def seal(self, plaintext: bytes, part: str) -> bytes:
        assert self.keys is not None
        return self.keys.encrypt(
            plaintext, job_id=self.job_id, queue=self.queue, function=self.function, part=part,
            key_id=self.key_id,
        )  # fmt: skip

    def seal_text(self, text: str, part: str) -> str:
        return self.seal(text.encode(), part).decode()

    def open(self, data: bytes, part: str) -> bytes:
        """`data` decrypted, or as it is when it is not encrypted; DecryptError if it cannot be."""
        if not is_encrypted(data):
            return data
        if self.keys is None:
            what = f"the {part} of job {self.job_id}"
            raise missing_key(what, envelope_key_id(data), None)
        return self.keys.decrypt(
            data, job_id=self.job_id, queue=self.queue, function=self.function, part=part
        )


def readable(seal: JobSeal | None, text: str, part: str) -> str:
    """A stored text field as tools show it: decrypted, or "encrypted (no key …)"; never raises."""
    if not is_encrypted(text):
        return text
    try:
        if seal is None:
            raise missing_key(part, envelope_key_id(text), None)
        return seal.open(text.encode(), part).decode(errors="replace")
    except DecryptError as error:
        return error.shown
