"""Recalls held by the store (``recall.add`` / ``recall.lift`` from central), so the till
refuses a recalled lot or serial even while offline.

``gtin`` is 14 digits; exactly one of ``lot`` (GS1 AI 10) and ``serial`` (AI 21) is set.
A lifted recall is deleted (the command stays in ``commands`` for audit).
"""

VERSION = 4

SQL = """
CREATE TABLE recalls (
    recall_id TEXT PRIMARY KEY,
    gtin      TEXT NOT NULL,
    lot       TEXT,
    serial    TEXT,
    reason    TEXT NOT NULL DEFAULT '',
    issued_at TEXT NOT NULL,
    cseq      INTEGER NOT NULL,
    CHECK ((lot IS NULL) <> (serial IS NULL))
) WITHOUT ROWID;
CREATE INDEX recalls_gtin ON recalls (gtin);
"""
