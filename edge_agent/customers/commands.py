"""Central's ``customers.*`` commands, applied to the store's customer cache in the
command's own ledger transaction (docs/protocol.md §5.1, extension).

- ``customers.key``: install the chain's pepper ``{key_id, key}`` (base64url, 32 bytes);
  at most two are kept (current and previous), a third retires the oldest.
- ``customers.key.retire``: ``{key_id}``; deletes the key and every identifier under it.
- ``customers.upsert``: ``{key_id, retention_days?, customers[{ref, profile{…},
  identifiers[{kind, hmac}]}]}``; replaces each customer's profile and identifiers.
- ``customers.remove``: ``{refs[]}``; consent withdrawn or customer erased.

What the store keeps of the command itself (the ``commands`` audit table) is a summary:
never the pepper, never a profile or a hash, so a withdrawal leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from edge_agent.errors import EdgeAgentError
from edge_agent.ledger import Tx
from edge_agent.visitors.store import LOYALTY_VERSION_KEY
from sync.customer_ids import KEY_ID_RE, KINDS, PEPPER_BYTES
from sync.wire import canonical_json, now_ts

COMMAND_TYPES: Final = frozenset({
    "customers.key", "customers.key.retire", "customers.upsert", "customers.remove",
})
ERASING_TYPES: Final = frozenset({"customers.remove", "customers.key.retire"})
"""After these, the WAL is checkpointed and truncated (:func:`truncate_wal`)."""
MAX_KEYS: Final = 2
MAX_CACHED: Final = 2_000_000
"""Bound of the cache; past it the least recently refreshed customers are evicted."""
DEFAULT_RETENTION_DAYS: Final = 30
MAX_RETENTION_DAYS: Final = 365
MAX_PROFILE_BYTES: Final = 4096
MAX_IDENTIFIERS: Final = 16
REF_MAX: Final = 128


class CustomerCommandInvalid(EdgeAgentError, ValueError):
    """Malformed ``customers.*`` data; nothing of the command was applied."""


def b64decode(text: Any, what: str, size: int) -> bytes:
    if not isinstance(text, str) or len(text) > 64:
        raise CustomerCommandInvalid(f"{what} must be base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CustomerCommandInvalid(f"{what} is not base64url") from exc
    if len(raw) != size:
        raise CustomerCommandInvalid(f"{what} must decode to {size} bytes")
    return raw


def _ref(value: Any, what: str) -> str:
    if (not isinstance(value, str) or not 1 <= len(value) <= REF_MAX
            or not value.isprintable()):
        raise CustomerCommandInvalid(f"{what} must be 1 to {REF_MAX} printable characters")
    return value


def _key_id(value: Any) -> str:
    if not isinstance(value, str) or KEY_ID_RE.fullmatch(value) is None:
        raise CustomerCommandInvalid("key_id must match [A-Za-z0-9_.-]{1,64}")
    return value


def _bump(tx: Tx) -> None:
    """Tell the visitor engine to reload its tag index."""
    tx.set_meta(LOYALTY_VERSION_KEY, str(int(tx.get_meta(LOYALTY_VERSION_KEY) or 0) + 1))


def _install_key(tx: Tx, data: Mapping[str, Any]) -> dict[str, Any]:
    key_id = _key_id(data.get("key_id"))
    key = b64decode(data.get("key"), "key", PEPPER_BYTES)
    tx.execute("INSERT INTO customer_keys (key_id, key, installed_at) VALUES (?, ?, ?) "
               "ON CONFLICT (key_id) DO UPDATE SET key = excluded.key", (key_id, key, now_ts()))
    held = [str(r[0]) for r in tx.query(
        "SELECT key_id FROM customer_keys ORDER BY installed_at DESC, key_id")]
    retired = [k for k in held if k != key_id][MAX_KEYS - 1:]
    for old in retired:
        _retire(tx, old)
    _bump(tx)
    return {"key_id": key_id, "retired": retired}


@contextmanager
def _secure_delete(tx: Tx) -> Iterator[None]:
    """Deletes that zero the freed space (SQLite ``secure_delete``), so a withdrawn
    customer's profile or a retired key does not linger in free pages; the old page
    images leave the WAL at the next checkpoint."""
    previous = int(tx.query("PRAGMA secure_delete")[0][0])
    tx.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        tx.execute(f"PRAGMA secure_delete = {1 if previous else 0}")


def _retire(tx: Tx, key_id: str) -> int:
    with _secure_delete(tx):
        tx.execute("UPDATE customer_keys SET key = zeroblob(length(key)) WHERE key_id = ?",
                   (key_id,))
        tx.execute("DELETE FROM customer_keys WHERE key_id = ?", (key_id,))
        return int(tx.execute("DELETE FROM customer_idents WHERE key_id = ?",
                              (key_id,)).rowcount)


def _check_customer(raw: Any, index: int) -> tuple[str, bytes, str, list[tuple[str, bytes]]]:
    if not isinstance(raw, Mapping):
        raise CustomerCommandInvalid(f"customers[{index}] is not an object")
    ref = _ref(raw.get("ref"), f"customers[{index}].ref")
    profile = raw.get("profile")
    if not isinstance(profile, Mapping):
        raise CustomerCommandInvalid(f"customers[{index}].profile is not an object")
    consent = profile.get("consent")
    if not isinstance(consent, Mapping) or consent.get("recognition") is not True:
        raise CustomerCommandInvalid(
            f"customers[{index}] has no recognition consent: central must not send it")
    body = canonical_json({**profile, "ref": ref})
    if len(body) > MAX_PROFILE_BYTES:
        raise CustomerCommandInvalid(f"customers[{index}].profile is over {MAX_PROFILE_BYTES} B")
    as_of = profile.get("as_of")
    idents = raw.get("identifiers")
    if not isinstance(idents, list) or not 1 <= len(idents) <= MAX_IDENTIFIERS:
        raise CustomerCommandInvalid(
            f"customers[{index}].identifiers must hold 1 to {MAX_IDENTIFIERS} entries")
    out: list[tuple[str, bytes]] = []
    for n, ident in enumerate(idents):
        if not isinstance(ident, Mapping) or ident.get("kind") not in KINDS:
            raise CustomerCommandInvalid(
                f"customers[{index}].identifiers[{n}].kind must be one of {', '.join(KINDS)}")
        out.append((str(ident["kind"]),
                    b64decode(ident.get("hmac"), f"customers[{index}].identifiers[{n}].hmac",
                              32)))
    return ref, body, as_of if isinstance(as_of, str) else now_ts(), out


def _upsert(tx: Tx, data: Mapping[str, Any], now: float) -> dict[str, Any]:
    key_id = _key_id(data.get("key_id"))
    if not tx.query("SELECT 1 FROM customer_keys WHERE key_id = ?", (key_id,)):
        raise CustomerCommandInvalid(f"unknown key_id {key_id!r}: customers.key must come first")
    days = data.get("retention_days", DEFAULT_RETENTION_DAYS)
    if type(days) is not int or not 1 <= days <= MAX_RETENTION_DAYS:
        raise CustomerCommandInvalid(f"retention_days must be an integer 1..{MAX_RETENTION_DAYS}")
    customers = data.get("customers")
    if not isinstance(customers, list) or not customers:
        raise CustomerCommandInvalid("customers must be a non-empty list")
    checked = [_check_customer(raw, index) for index, raw in enumerate(customers)]
    expires = now + days * 86400
    tags = False
    for ref, body, as_of, idents in checked:
        tx.execute(
            "INSERT INTO customers (ref, profile, as_of, cached_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET profile = excluded.profile, "
            "as_of = excluded.as_of, cached_at = excluded.cached_at, "
            "expires_at = excluded.expires_at", (ref, body, as_of, now, expires))
        tags |= bool(tx.execute("DELETE FROM customer_idents WHERE ref = ? AND key_id = ? "
                                "AND kind = 'tag'", (ref, key_id)).rowcount)
        tx.execute("DELETE FROM customer_idents WHERE ref = ? AND key_id = ?", (ref, key_id))
        tx.executemany(
            "INSERT INTO customer_idents (hmac, key_id, kind, ref) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (hmac) DO UPDATE SET key_id = excluded.key_id, kind = excluded.kind, "
            "ref = excluded.ref", [(h, key_id, kind, ref) for kind, h in idents])
        tags |= any(kind == "tag" for kind, _ in idents)
    evicted = purge(tx, now)
    if tags or evicted:
        _bump(tx)
    return {"key_id": key_id, "customers": len(checked), "evicted": evicted}


def _remove(tx: Tx, data: Mapping[str, Any]) -> dict[str, Any]:
    refs = data.get("refs")
    if not isinstance(refs, list) or not refs or len(refs) > 10_000:
        raise CustomerCommandInvalid("refs must be a list of 1 to 10000 customer references")
    checked = [_ref(ref, f"refs[{n}]") for n, ref in enumerate(refs)]
    removed = 0
    with _secure_delete(tx):
        for ref in checked:
            removed += int(tx.execute("DELETE FROM customers WHERE ref = ?", (ref,)).rowcount)
            tx.execute("DELETE FROM customer_idents WHERE ref = ?", (ref,))
    _bump(tx)
    return {"customers": len(checked), "removed": removed}


def purge(tx: Tx, now: float, max_cached: int = MAX_CACHED) -> int:
    """Delete expired customers, then the least recently refreshed past ``max_cached``."""
    expired = [str(r[0]) for r in tx.query(
        "SELECT ref FROM customers WHERE expires_at <= ? LIMIT 10000", (now,))]
    count = int(tx.query("SELECT count(*) FROM customers")[0][0]) - len(expired)
    extra: list[str] = []
    if count > max_cached:
        extra = [str(r[0]) for r in tx.query(
            "SELECT ref FROM customers WHERE expires_at > ? ORDER BY cached_at LIMIT ?",
            (now, count - max_cached))]
    with _secure_delete(tx):
        for ref in (*expired, *extra):
            tx.execute("DELETE FROM customers WHERE ref = ?", (ref,))
            tx.execute("DELETE FROM customer_idents WHERE ref = ?", (ref,))
    return len(expired) + len(extra)


def apply_customer_command(tx: Tx, command_type: str, data: Any,
                           now: float | None = None) -> dict[str, Any]:
    """Apply one command; all or nothing (raises :class:`CustomerCommandInvalid` before any
    write). Returns the summary the store keeps in place of the data."""
    if not isinstance(data, Mapping):
        raise CustomerCommandInvalid("data must be an object")
    moment = time.time() if now is None else now
    if command_type == "customers.key":
        return _install_key(tx, data)
    if command_type == "customers.key.retire":
        key_id = _key_id(data.get("key_id"))
        removed = _retire(tx, key_id)
        _bump(tx)
        return {"key_id": key_id, "identifiers_removed": removed}
    if command_type == "customers.upsert":
        return _upsert(tx, data, moment)
    if command_type == "customers.remove":
        return _remove(tx, data)
    raise CustomerCommandInvalid(f"{command_type!r} is not a customers command")


def truncate_wal(path: Path) -> None:
    """Copy the WAL into the database and truncate it, so the page images of a withdrawn
    customer or a retired pepper do not stay in the WAL file (blocking: run in a thread).
    Best effort: with a long reader it is left to SQLite's next checkpoint."""
    conn = sqlite3.connect(path, timeout=5.0)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
