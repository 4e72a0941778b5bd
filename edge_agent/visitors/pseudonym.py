"""Pseudonyms (PROTOCOL §10) and loyalty tag hashes. Pure functions, no I/O.

``pseudonym = HMAC-SHA256(key, raw_id)[:16 hex]`` with a random 32-byte key that the
engine rotates and destroys; without the key a pseudonym cannot be linked to a raw id
or to the pseudonym of the same shopper in another key period.

``loyalty_hash = SHA-256(raw_id)`` (lower-case hex, no key) is what central sends for a
*registered* tag, so the store never receives raw tag ids; the store hashes each raw read
in memory and compares. See :mod:`edge_agent.visitors.loyalty` for why this is unkeyed.

Both hash the *normalised* raw id: surrounding blanks removed, upper-case, UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

KEY_BYTES: Final = 32
PSEUDONYM_HEX: Final = 16


def normalise_raw_id(raw_id: str) -> bytes:
    """The canonical bytes of a tag or beacon id: ``" 0a1b2c3d4e "`` -> ``b"0A1B2C3D4E"``."""
    return raw_id.strip().upper().encode("utf-8")


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def loyalty_hash(raw_id: str) -> str:
    """What central sends as ``tag_hash`` for a registered tag (lower-case hex SHA-256)."""
    return hashlib.sha256(normalise_raw_id(raw_id)).hexdigest()


class Pseudonymiser:
    """HMAC-SHA256 under one key, truncated to 16 hex characters."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a visitor key must be at least 16 bytes")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, raw_id: str) -> str:
        mac = self._base.copy()
        mac.update(normalise_raw_id(raw_id))
        return mac.hexdigest()[:PSEUDONYM_HEX]


def pseudonym(key: bytes, raw_id: str) -> str:
    """One-off form of :class:`Pseudonymiser` (tests, tools)."""
    return Pseudonymiser(key)(raw_id)
