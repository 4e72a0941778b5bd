"""Registered loyalty tags, synced from central as ``loyalty.upsert`` / ``loyalty.remove``.

Design (privacy): central never sends a raw tag id. For each tag a shopper registered,
central sends ``tag_hash`` = lower-case hex SHA-256 of the normalised tag id (blanks
stripped, upper-case, UTF-8; :func:`edge_agent.visitors.pseudonym.loyalty_hash`) and
``customer``, central's opaque customer reference. The store keeps only these pairs and,
for each *new visit*, hashes the raw read in memory and looks it up.

Why unkeyed SHA-256 rather than the rotating visitor HMAC: the catalog must stay valid
across key rotations and be the same for every store, and a store must not be able to
recover raw ids from central's data. The hash of a 40-bit EM4100 id can be brute-forced,
so ``tag_hash`` is treated as personal data of a *consenting* customer (it identifies them
exactly as their card number would); it exists only for shoppers who registered, it never
appears in events, logs or the hub (which carry ``customer``), and it is deleted by
``loyalty.remove``. Unregistered shoppers are never hashed this way to disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from edge_agent.ledger import Tx
from edge_agent.visitors.errors import LoyaltyCommandInvalid
from edge_agent.visitors.store import LOYALTY_VERSION_KEY

COMMAND_TYPES: Final = frozenset({"loyalty.upsert", "loyalty.remove"})
TAG_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")
CUSTOMER_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
MAX_TAGS: Final = 5000


def _tags(data: Mapping[str, Any], with_customer: bool) -> list[tuple[str, str]]:
    tags = data.get("tags")
    if not isinstance(tags, list) or not tags:
        raise LoyaltyCommandInvalid("data.tags must be a non-empty list")
    if len(tags) > MAX_TAGS:
        raise LoyaltyCommandInvalid(f"data.tags has {len(tags)} entries; at most {MAX_TAGS}")
    out: list[tuple[str, str]] = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, Mapping):
            raise LoyaltyCommandInvalid(f"data.tags[{index}] is not an object")
        tag_hash = tag.get("tag_hash")
        if not isinstance(tag_hash, str) or TAG_HASH_RE.fullmatch(tag_hash) is None:
            raise LoyaltyCommandInvalid(
                f"data.tags[{index}].tag_hash must be 64 lower-case hex digits (SHA-256)")
        customer = tag.get("customer")
        if with_customer and (
            not isinstance(customer, str) or CUSTOMER_RE.fullmatch(customer) is None
        ):
            raise LoyaltyCommandInvalid(
                f"data.tags[{index}].customer must be 1 to 128 printable characters")
        out.append((tag_hash, customer if isinstance(customer, str) else ""))
    return out


def apply_loyalty_command(tx: Tx, command_type: str, data: dict[str, Any]) -> None:
    """Apply one loyalty command inside the command's transaction.

    All or nothing: on malformed data it raises :class:`LoyaltyCommandInvalid` before
    changing anything (the caller flags the command). ``loyalty.remove`` of an unknown
    hash is not an error.
    """
    if command_type not in COMMAND_TYPES:
        raise LoyaltyCommandInvalid(f"{command_type!r} is not a loyalty command")
    if not isinstance(data, Mapping):
        raise LoyaltyCommandInvalid("data must be an object")
    if command_type == "loyalty.upsert":
        pairs = _tags(data, with_customer=True)
        tx.executemany(
            "INSERT INTO loyalty_tags (tag_hash, customer) VALUES (?, ?) "
            "ON CONFLICT (tag_hash) DO UPDATE SET customer = excluded.customer",
            pairs,
        )
    else:
        pairs = _tags(data, with_customer=False)
        tx.executemany("DELETE FROM loyalty_tags WHERE tag_hash = ?",
                       [(tag_hash,) for tag_hash, _ in pairs])
    version = int(tx.get_meta(LOYALTY_VERSION_KEY) or 0) + 1
    tx.set_meta(LOYALTY_VERSION_KEY, str(version))
