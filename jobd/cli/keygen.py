"""`jobd keygen`: print a new key for encrypted payloads (docs/encryption.md)."""

from __future__ import annotations

import sys

from jobd import crypto


def keygen() -> int:
    """Print a new random key (32 bytes, URL-safe base64) on stdout, and its id on stderr, so that
    `KEY=$(jobd keygen)` captures the key alone."""
    key = crypto.new_key()
    print(key)
    print(f"key id {crypto.key_id(crypto.parse_key(key))}", file=sys.stderr)
    return 0
