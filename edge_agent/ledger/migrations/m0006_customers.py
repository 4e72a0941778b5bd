"""Customers at the till: the chain's pepper(s), the cache of consenting customers'
minimal profiles, and their identifiers as keyed hashes (``sync.customer_ids``).

No table holds a raw phone number, card number or tag id: ``customer_idents.hmac`` is the
32-byte HMAC-SHA256 under a pepper of ``customer_keys`` (at most two: the current one and,
during a rotation, the previous). ``customers.expires_at`` bounds the retention; the agent
also bounds the count (``customers.max_cached``). Keys are deleted with
``PRAGMA secure_delete`` when retired.

The loyalty tags of m0003 were unkeyed SHA-256 hashes of the tag id; they cannot be
re-keyed at the store (it never had the raw ids), so they are dropped here and central
re-sends each registered tag as a keyed ``tag`` identifier (``customers.upsert``) when it
sends the store its pepper. Old ``loyalty.upsert`` commands are refused (flagged) since.
"""

VERSION = 6

SQL = """
CREATE TABLE customer_keys (
    key_id       TEXT PRIMARY KEY,
    key          BLOB NOT NULL,
    installed_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE customers (
    ref        TEXT PRIMARY KEY,
    profile    BLOB NOT NULL,
    as_of      TEXT NOT NULL,
    cached_at  REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX customers_expiry ON customers (expires_at);

CREATE TABLE customer_idents (
    hmac   BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    kind   TEXT NOT NULL,
    ref    TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX customer_idents_ref ON customer_idents (ref);

DROP TABLE loyalty_tags;
"""
