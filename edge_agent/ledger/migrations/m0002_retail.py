"""Retail bookkeeping beside the ledger: sales and returns (for return checks and
lookups), idempotency keys of API writes, open baskets and receiving/count sessions of
scan-only terminals. The facts themselves are the ``events`` rows; these tables only
index and remember them."""

VERSION = 2

SQL = """
CREATE TABLE sales (
    sale_id    TEXT PRIMARY KEY,
    epoch      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    ts         TEXT NOT NULL,
    terminal   TEXT NOT NULL,
    total      TEXT NOT NULL,
    currency   TEXT NOT NULL,
    customer   TEXT,
    lines      TEXT NOT NULL  -- the fact's lines [{sku, gtin?, qty, unit_price, line_total}]
) WITHOUT ROWID;
CREATE INDEX sales_ts ON sales (ts);  -- visitors' conversion report counts sales by time

CREATE TABLE returns (
    return_id    TEXT PRIMARY KEY,
    sale_id      TEXT,
    epoch        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    ts           TEXT NOT NULL,
    refund_total TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX returns_sale ON returns (sale_id);

CREATE TABLE return_lines (
    return_id TEXT NOT NULL,
    line_no   INTEGER NOT NULL,
    sale_id   TEXT,
    sku       TEXT NOT NULL,
    qty       INTEGER NOT NULL,
    restock   INTEGER NOT NULL,
    PRIMARY KEY (return_id, line_no)
) WITHOUT ROWID;
CREATE INDEX return_lines_sale ON return_lines (sale_id, sku);

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE baskets (
    terminal    TEXT PRIMARY KEY,
    basket_id   TEXT NOT NULL UNIQUE,
    opened_at   TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    pending_qty INTEGER,
    customer    TEXT,
    next_line   INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;

CREATE TABLE basket_lines (
    basket_id  TEXT NOT NULL,
    line_no    INTEGER NOT NULL,
    sku        TEXT NOT NULL,
    gtin       TEXT,
    qty        INTEGER NOT NULL,
    unit_price TEXT,
    line_total TEXT,
    PRIMARY KEY (basket_id, line_no)
) WITHOUT ROWID;

CREATE TABLE stock_sessions (
    session_id TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('receive', 'count')),
    terminal   TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'cancelled')),
    ref        TEXT,
    count_id   TEXT,
    opened_at  TEXT NOT NULL,
    closed_at  TEXT,
    closed_seq INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX stock_sessions_open ON stock_sessions (terminal, kind) WHERE status = 'open';

CREATE TABLE stock_session_lines (
    session_id TEXT NOT NULL,
    sku        TEXT NOT NULL,
    qty        INTEGER NOT NULL,
    PRIMARY KEY (session_id, sku)
) WITHOUT ROWID;
"""
