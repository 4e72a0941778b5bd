"""Reads of the store's customer cache: the till's lookup, the visitor engine's tag index,
and figures. Plain functions on a read connection (run in the ledger's reader threads).

The lookup does the same work whether it finds someone or not, so its time tells nothing:
it always reads the keys, computes one HMAC per key slot (a throw-away key fills an empty
slot), runs one indexed query per slot for the identifier *at or after* the digest (the
match on a hit, a random neighbour on a miss: the same pages, B-tree depth and join), and
decodes one profile (the neighbour's on a miss; a stand-in only in an empty cache).
``tests/edge_agent/customers/test_lookup.py`` proves the call sequence identical.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

import orjson

from edge_agent.customers.commands import MAX_KEYS
from sync.customer_ids import keyed_hash

_SPARE_KEY: Final = secrets.token_bytes(32)
_STAND_IN: Final = orjson.dumps({
    "ref": "-" * 12, "name": "-" * 16, "as_of": "2000-01-01T00:00:00.000Z",
    "consent": {"recognition": False, "marketing": False},
    "loyalty": {"tier": "-" * 6, "points": 0}, "reservations": [],
    "open_orders": [{"order_ref": "-" * 10, "status": "placed", "total": "0.00",
                     "currency": "EUR", "placed_at": "2000-01-01T00:00:00.000Z"}],
    "wishlist": ["-" * 10] * 3, "recently_viewed": ["-" * 10] * 3,
    "value": {"index": 0, "channels": ["-" * 6], "recency_days": 0, "spend": "0.00",
              "currency": "EUR"},
})
_NEAREST: Final = (
    "SELECT i.hmac, c.profile, c.expires_at FROM customer_idents AS i "
    "JOIN customers AS c ON c.ref = i.ref WHERE i.hmac >= ? ORDER BY i.hmac LIMIT 1")
"""The identifier at or after a digest: the very one on a hit; on a miss a uniformly
random neighbour (hashes are uniform), so both read the same kind of pages."""


@dataclass(frozen=True, slots=True)
class Found:
    profile: dict[str, Any]


def _keys(conn: sqlite3.Connection) -> list[bytes]:
    keys = [bytes(r[0]) for r in conn.execute(
        "SELECT key FROM customer_keys ORDER BY installed_at DESC LIMIT ?", (MAX_KEYS,))]
    return keys + [_SPARE_KEY] * (MAX_KEYS - len(keys))


def lookup(conn: sqlite3.Connection, kind: str, normalised: str, now: float) -> Found | None:
    """The consenting, unexpired customer with this identifier, or None. Constant work."""
    digests = [keyed_hash(key, kind, normalised) for key in _keys(conn)]
    rows = [conn.execute(_NEAREST, (digest,)).fetchone() for digest in digests]
    hits = [r for r, d in zip(rows, digests, strict=True) if r is not None and r[0] == d]
    seen = [r for r in rows if r is not None]
    _, body, expires = (hits or seen or [(b"", _STAND_IN, 0.0)])[0]
    profile = orjson.loads(body)  # a neighbour's on a miss, decoded and dropped
    found = bool(hits)
    fresh = found & (float(expires) > now)
    consented = profile.get("consent", {}).get("recognition") is True
    answer = Found(profile)
    return answer if fresh & consented else None


def tag_index(conn: sqlite3.Connection) -> tuple[list[bytes], dict[bytes, str]]:
    """The held peppers and the keyed hash → customer of every registered loyalty tag."""
    keys = [bytes(r[0]) for r in conn.execute(
        "SELECT key FROM customer_keys ORDER BY installed_at DESC LIMIT ?", (MAX_KEYS,))]
    tags = {bytes(r[0]): str(r[1]) for r in conn.execute(
        "SELECT hmac, ref FROM customer_idents WHERE kind = 'tag'")}
    return keys, tags


def figures(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts only: how many customers and identifiers are cached, under how many keys."""
    customers, oldest = conn.execute(
        "SELECT count(*), min(cached_at) FROM customers").fetchone()
    idents = conn.execute("SELECT kind, count(*) FROM customer_idents GROUP BY kind").fetchall()
    keys = conn.execute("SELECT key_id, installed_at FROM customer_keys "
                        "ORDER BY installed_at").fetchall()
    return {"customers": int(customers), "oldest_cached_at": oldest,
            "identifiers": {str(k): int(n) for k, n in idents},
            "keys": [{"key_id": str(k), "installed_at": str(at)} for k, at in keys]}
