"""Shared helpers of the customers tests: a pepper, and the commands central would send."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from edge_agent.customers.commands import apply_customer_command
from edge_agent.ledger import Tx
from sync.customer_ids import keyed_hash, normalise

PEPPER = bytes(range(32))
KEY_ID = "k1"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def customer_entry(ref: str, idents: Sequence[tuple[str, str]], *, pepper: bytes = PEPPER,
                   name: str = "Nina", recognition: bool = True,
                   as_of: str = "2026-11-25T09:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"ref": ref, "profile": {
        "ref": ref, "name": name, "as_of": as_of,
        "consent": {"recognition": recognition, "marketing": False},
        "loyalty": {"tier": "gold", "points": 1200}, "wishlist": ["PHONE-A", "PHONE-B"],
        "recently_viewed": ["CASE-1"], "open_orders": [], "reservations": [],
        "value": {"index": 55, "channels": ["online"], "recency_days": 1, "spend": "129.90",
                  "currency": "EUR"}, **extra},
        "identifiers": [{"kind": kind, "hmac": b64(keyed_hash(pepper, kind,
                                                              normalise(kind, value, "FR")))}
                        for kind, value in idents]}


def install(tx: Tx, customers: Sequence[dict[str, Any]], *, key_id: str = KEY_ID,
            pepper: bytes = PEPPER, now: float | None = None) -> None:
    apply_customer_command(tx, "customers.key", {"key_id": key_id, "key": b64(pepper)})
    apply_customer_command(tx, "customers.upsert", {"key_id": key_id,
                                                    "customers": list(customers)}, now=now)
