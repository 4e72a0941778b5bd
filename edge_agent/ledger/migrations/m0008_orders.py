"""The store's fulfilment queue: one row per ``order.assign`` (per reservation attempt; an
order central brokers to this store twice has two rows, the newer one is shown), with the
picked units so far, so a restart mid-pick loses no scan. The order's ledger facts are the
events themselves; ``history`` is a small JSON list of the steps for the clerk's screen.

``pickup_code_hash`` is what central sends (SHA-256 hex); the code itself is never stored.
"""

VERSION = 8

SQL = """
CREATE TABLE orders (
    reservation_id   TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    fulfilment       TEXT NOT NULL,
    customer_ref     TEXT,
    lines            TEXT NOT NULL,
    picked           TEXT NOT NULL DEFAULT '[]',
    accept_by        TEXT,
    ship_to          TEXT,
    pickup_code_hash TEXT,
    status           TEXT NOT NULL,
    reason           TEXT,
    tracking         TEXT,
    parcels          INTEGER,
    history          TEXT NOT NULL DEFAULT '[]',
    assigned_cseq    INTEGER NOT NULL,
    received_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX orders_order_id ON orders (order_id, assigned_cseq);
CREATE INDEX orders_status ON orders (status, received_at);
"""
