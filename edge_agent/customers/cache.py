"""Reads of the store's customer cache: the till's lookup, the visitor engine's tag index,
and figures. Plain functions on a read connection (run in the ledger's reader threads).

The lookup does the same work whether it finds someone or not, so its time tells nothing:
it always reads the keys, computes one HMAC per key slot (a throw-away key fills an empty
slot), runs two indexed queries (identifier, then profile: a decoy reference on a miss,
which descends the same B-tree), and decodes a profile (a stand-in of typical size on a
miss). ``tests/edge_agent/customers/test_lookup.py`` proves the call sequence identical.
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
_IDENT: Final = ("SELECT ref FROM customer_idents WHERE hmac IN ("
                  + ", ".join("?" * MAX_KEYS) + ") LIMIT 1")
_PROFILE: Final = "SELECT profile, expires_at FROM customers WHERE ref = ?"
_DECOY: Final = "\x00" * 12  # no customer has it: a miss descends the same B-tree


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
    ident = conn.execute(_IDENT, digests).fetchone()
    ref = ident[0] if ident is not None else _DECOY
    row = conn.execute(_PROFILE, (ref,)).fetchone()
    found = row is not None
    body, expires = row if found else (_STAND_IN, 0.0)
    profile = orjson.loads(body)
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
