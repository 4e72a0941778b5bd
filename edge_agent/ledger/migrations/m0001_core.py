"""Core ledger: store identity, epochs, events (the outbox), stock projection, catalog,
reservations, count requests and applied central commands."""

VERSION = 1

SQL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE epochs (
    ordinal    INTEGER PRIMARY KEY,
    epoch      TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    reason     TEXT NOT NULL,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    acked_seq  INTEGER NOT NULL DEFAULT 0
);

-- id = (epoch ordinal << 40) | seq: one B-tree ordered by epoch then seq, no extra index.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    epoch_ordinal INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    type          TEXT NOT NULL,
    ts            TEXT NOT NULL,
    payload       BLOB NOT NULL
);

CREATE TABLE stock (
    sku      TEXT PRIMARY KEY,
    on_hand  INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE catalog (
    sku          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    price        TEXT NOT NULL,
    currency     TEXT NOT NULL,
    uom          TEXT NOT NULL DEFAULT 'unit',
    active       INTEGER NOT NULL DEFAULT 1,
    extra        TEXT NOT NULL DEFAULT '{}',
    updated_cseq INTEGER
);

CREATE TABLE catalog_gtins (
    gtin TEXT PRIMARY KEY,
    sku  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX catalog_gtins_sku ON catalog_gtins (sku);

CREATE TABLE catalog_aliases (
    alias TEXT PRIMARY KEY,
    sku   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE reservations (
    reservation_id   TEXT PRIMARY KEY,
    order_ref        TEXT NOT NULL,
    lines            TEXT NOT NULL,
    remaining        TEXT NOT NULL,
    expires_at       TEXT,
    status           TEXT NOT NULL DEFAULT 'open',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_cseq     INTEGER,
    closed_seq       INTEGER
);

CREATE TABLE count_requests (
    count_id     TEXT PRIMARY KEY,
    skus         TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open',
    closed_seq   INTEGER
);

CREATE TABLE commands (
    cseq       INTEGER PRIMARY KEY,
    command_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT,
    payload    BLOB NOT NULL,
    applied_at TEXT NOT NULL
);
"""
