"""Recalls at the store: applying central's ``recall.add`` / ``recall.lift`` commands
(inside the command's transaction) and finding the recall a scanned item falls under.

The data is checked by :func:`sync.recalls.check_recall` (the same check central runs
before it issues one).  A malformed command changes nothing: the caller flags it and
this module records an ``alert`` event ``recall_command_invalid`` so central sees it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_agent.ledger import Tx
from sync.recalls import RECALL_ADD, RecallInvalid, check_recall
from sync.wire import now_ts

QueryFn = Callable[[str, Sequence[Any]], list[sqlite3.Row]]


def apply_recall_command(tx: Tx, command: Mapping[str, Any]) -> str | None:
    """Apply one recall command; the problem (the command is then flagged) or None."""
    ctype = str(command.get("type"))
    try:
        data = check_recall(ctype, command.get("data"))
    except RecallInvalid as exc:
        tx.append("alert", {"kind": "recall_command_invalid", "cseq": command.get("cseq"),
                            "command_type": ctype[:64], "reason": str(exc)})
        return f"{ctype}: {exc}"
    if ctype == RECALL_ADD:
        tx.execute(
            "INSERT INTO recalls (recall_id, gtin, lot, serial, reason, issued_at, cseq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (recall_id) DO UPDATE SET "
            "gtin = excluded.gtin, lot = excluded.lot, serial = excluded.serial, "
            "reason = excluded.reason, issued_at = excluded.issued_at, cseq = excluded.cseq",
            (data["recall_id"], data["gtin"], data.get("lot"), data.get("serial"),
             data["reason"], str(command.get("ts", "")), int(command.get("cseq", 0))))
    else:
        tx.execute("DELETE FROM recalls WHERE recall_id = ?", (data["recall_id"],))
    return None


def find_recall(query: QueryFn, gtin14: str, lot: str | None,
                serial: str | None) -> dict[str, Any] | None:
    """The recall covering this GTIN and lot or serial, or None."""
    if lot is None and serial is None:
        return None
    rows = query(
        "SELECT recall_id, gtin, lot, serial, reason FROM recalls WHERE gtin = ? AND "
        "((lot IS NOT NULL AND lot = ?) OR (serial IS NOT NULL AND serial = ?)) "
        "ORDER BY recall_id LIMIT 1", (gtin14, lot, serial))
    if not rows:
        return None
    row = rows[0]
    return {key: row[key] for key in ("recall_id", "gtin", "lot", "serial", "reason")
            if row[key] is not None}


def list_recalls(query: QueryFn) -> list[dict[str, Any]]:
    rows = query("SELECT recall_id, gtin, lot, serial, reason, issued_at, cseq FROM recalls "
                 "ORDER BY recall_id", ())
    keys = ("recall_id", "gtin", "lot", "serial", "reason", "issued_at", "cseq")
    return [{key: row[key] for key in keys if row[key] is not None} for row in rows]


def replace_recalls(tx: Tx, recalls: Sequence[Any]) -> int:
    """A snapshot's recalls replace the store's (a malformed entry is skipped and reported
    with a ``recall_command_invalid`` alert, like a malformed command)."""
    tx.execute("DELETE FROM recalls")
    kept = 0
    for entry in recalls:
        try:
            data = check_recall(RECALL_ADD, entry)
        except RecallInvalid as exc:
            tx.append("alert", {"kind": "recall_command_invalid", "command_type": "snapshot",
                                "reason": str(exc)})
            continue
        tx.execute("INSERT OR REPLACE INTO recalls (recall_id, gtin, lot, serial, reason, "
                   "issued_at, cseq) VALUES (?, ?, ?, ?, ?, ?, 0)",
                   (data["recall_id"], data["gtin"], data.get("lot"), data.get("serial"),
                    data["reason"], now_ts()))
        kept += 1
    return kept
