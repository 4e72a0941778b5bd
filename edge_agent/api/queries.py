"""SQL the ops routes run against the ledger's schema (``meta``, ``events``, epochs).

These belong with the ledger's own query modules (``edge_agent.ledger``), which engineer
h-ledger is splitting in the same wave; they wait here until that split lands.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edge_agent.ledger import event_key, read_epochs


def resync_needed(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'resync_needed'").fetchone()
    return row is not None and str(row[0]) == "1"


def pending_events(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events central has not acknowledged yet, oldest epoch first."""
    out: list[dict[str, Any]] = []
    for info in read_epochs(conn):
        if info.last_seq <= info.acked_seq or len(out) >= limit:
            continue
        rows = conn.execute(
            "SELECT seq, event_id, type, ts, length(payload) FROM events "
            "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (event_key(info.ordinal, info.acked_seq), event_key(info.ordinal, info.last_seq),
             limit - len(out)),
        )
        out.extend({"epoch": info.epoch, "seq": int(r[0]), "id": r[1], "type": r[2],
                    "ts": r[3], "bytes": int(r[4])} for r in rows)
    return out


def epoch_marks(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each epoch's watermarks: last seq recorded, acknowledged by central, pending."""
    return [{"epoch": e.epoch, "last_seq": e.last_seq, "acked_seq": e.acked_seq,
             "pending": max(0, e.last_seq - e.acked_seq)} for e in read_epochs(conn)]
