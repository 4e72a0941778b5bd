"""Pseudonyms (PROTOCOL §10). Pure functions, no I/O.

``pseudonym = HMAC-SHA256(key, raw_id)[:16 hex]`` with a random 32-byte key that the
engine rotates and destroys; without the key a pseudonym cannot be linked to a raw id
or to the pseudonym of the same shopper in another key period.

Registered loyalty tags are recognised by a different, chain-wide keyed hash
(:mod:`sync.customer_ids`), never by a pseudonym. Pseudonyms hash the *normalised* raw
id: surrounding blanks removed, upper-case, UTF-8.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

KEY_BYTES: Final = 32
_BLOCK: Final = 64  # SHA-256 block size
PSEUDONYM_HEX: Final = 16


def normalise_raw_id(raw_id: str) -> bytes:
    """The canonical bytes of a tag or beacon id: ``" 0a1b2c3d4e "`` -> ``b"0A1B2C3D4E"``."""
    return raw_id.strip().upper().encode("utf-8")


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class Pseudonymiser:
    """HMAC-SHA256 under one key, truncated to 16 hex characters.

    RFC 2104 spelled out with the padded-key hash states computed once (a third cheaper
    per call than copying an ``hmac`` object); equal to ``hmac.new(key, msg, sha256)``.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if not 16 <= len(key) <= _BLOCK:
            raise ValueError(f"a visitor key must be 16 to {_BLOCK} bytes")
        padded = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def __call__(self, raw_id: str) -> str:
        inner = self._inner.copy()
        inner.update(normalise_raw_id(raw_id))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:PSEUDONYM_HEX]


def pseudonym(key: bytes, raw_id: str) -> str:
    """One-off form of :class:`Pseudonymiser` (tests, tools)."""
    return Pseudonymiser(key)(raw_id)
