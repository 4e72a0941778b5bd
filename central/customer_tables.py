"""The customer registry's tables, additive to the central's schema (both dialects).

``customers`` (one row per customer: display name, consent flags, online context),
``customer_identifiers`` (the normalised phone / card / tag a customer registered: the
registry is the chain's system of record; stores only ever get keyed hashes of them),
``customer_history`` (purchases, returns and visits from store events, online orders),
``customer_keys`` (the chain's peppers, base64url), ``customer_store_keys`` (which pepper
each store was sent last) and ``customer_compacted`` (through which cseq a store's
acknowledged ``customers.*`` commands were reduced to a summary).
"""

from __future__ import annotations

from typing import Final

CUSTOMER_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS customers (
        ref TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        consent TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'active',
        context TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS customer_identifiers (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        ref TEXT NOT NULL,
        PRIMARY KEY (kind, value)
    )""",
    "CREATE INDEX IF NOT EXISTS customer_identifiers_ref ON customer_identifiers (ref)",
    """CREATE TABLE IF NOT EXISTS customer_history (
        ref TEXT NOT NULL,
        kind TEXT NOT NULL,
        source_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        store TEXT,
        ts TEXT NOT NULL,
        amount TEXT,
        currency TEXT,
        status TEXT,
        detail TEXT,
        PRIMARY KEY (ref, kind, source_id)
    )""",
    """CREATE TABLE IF NOT EXISTS customer_keys (
        key_id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        created TEXT NOT NULL,
        state TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS customer_store_keys (
        store TEXT PRIMARY KEY,
        key_id TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS customer_compacted (
        store TEXT PRIMARY KEY,
        through_cseq BIGINT NOT NULL
    )""",
)
