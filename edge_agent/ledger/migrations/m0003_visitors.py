"""Visitors: closed visits (for reports, kept ``visitors.retention_days``), open-visit state
for restarts, footfall counters per door and period, the visitor pseudonym key, and the
registered loyalty tags synced from central.

No table holds a raw shopper identifier: visits are keyed by pseudonym (PROTOCOL §10),
loyalty tags by the SHA-256 central sends (see ``edge_agent.visitors.loyalty``). The key
row is overwritten and deleted (with ``PRAGMA secure_delete``) when it rotates.
Times are Unix seconds (REAL) except ``footfall.period_start`` (INTEGER, period grid).
"""

VERSION = 3

SQL = """
CREATE TABLE visitor_keys (
    id         INTEGER PRIMARY KEY,
    key        BLOB NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE visits (
    visit_id   TEXT PRIMARY KEY,
    visitor    TEXT NOT NULL,
    source     TEXT NOT NULL,
    zone       TEXT NOT NULL,
    device     TEXT NOT NULL,
    entered_at REAL NOT NULL,
    left_at    REAL NOT NULL,
    dwell_s    INTEGER NOT NULL,
    customer   TEXT,
    seq        INTEGER
) WITHOUT ROWID;
CREATE INDEX visits_entered_at ON visits (entered_at);
CREATE INDEX visits_left_at ON visits (left_at);

CREATE TABLE visit_open (
    visitor    TEXT PRIMARY KEY,
    visit_id   TEXT NOT NULL UNIQUE,
    source     TEXT NOT NULL,
    zone       TEXT NOT NULL,
    device     TEXT NOT NULL,
    entered_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    customer   TEXT,
    key_id     INTEGER
) WITHOUT ROWID;

CREATE TABLE footfall (
    door         TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_s     INTEGER NOT NULL,
    entries      INTEGER NOT NULL DEFAULT 0,
    exits        INTEGER NOT NULL DEFAULT 0,
    emitted      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (door, period_start)
) WITHOUT ROWID;
CREATE INDEX footfall_period ON footfall (period_start);

CREATE TABLE footfall_doors (
    door            TEXT PRIMARY KEY,
    emitted_through INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE loyalty_tags (
    tag_hash     TEXT PRIMARY KEY,
    customer     TEXT NOT NULL
) WITHOUT ROWID;
"""
