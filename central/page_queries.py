"""Reads and the one write behind the operations page: the grid of stores, open alerts
(those nobody acknowledged), a store's pending commands, and acknowledging an alert.

Reads run inside ``Database.reading`` (one snapshot); :func:`ack_alert` runs on the writer
thread (``CentralService.call``), the only writer. Acknowledgements live in their own
table (``alert_acks``), so the alerts themselves are never rewritten.
"""

from __future__ import annotations

from typing import Any

import orjson

from central.queries import select_limited
from central.storage import Connection
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now

_OPEN = "NOT EXISTS (SELECT 1 FROM alert_acks k WHERE k.id = a.id)"


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _age_s(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return max(0.0, round((utc_now() - parse_ts(ts)).total_seconds(), 1))
    except WireFormatError:
        return None


def stores_grid(conn: Connection) -> list[dict[str, Any]]:
    """One row per store: online or offline, event backlog and ack lag (from its latest
    health), commands not yet acknowledged, the last digest's verdict, open alerts."""
    open_alerts = {str(s): int(n) for s, n in conn.execute(
        f"SELECT a.store, COUNT(*) FROM alerts a WHERE {_OPEN} GROUP BY a.store")}
    out = []
    for store, state, state_ts, issued, acked, health, health_ts, digest in conn.execute(
            "SELECT store, state, state_ts, issued_cseq, acked_cseq, health, health_ts, "
            "digest_result FROM stores ORDER BY store"):
        h = _json(health) or {}
        d = _json(digest)
        out.append({
            "store": store, "state": state, "since": state_ts,
            "backlog": h.get("outbox_pending"),
            "ack_lag_s": h.get("outbox_oldest_age_s"),
            "last_ack_age_s": _age_s(h.get("last_ack_at")),
            "health_age_s": _age_s(health_ts),
            "commands_pending": max(0, int(issued or 0) - int(acked or 0)),
            "digest": None if d is None else ("match" if d.get("match") else "mismatch"),
            "digest_ts": None if d is None else d.get("ts"),
            "open_alerts": open_alerts.get(str(store), 0),
        })
    return out


def open_alerts(conn: Connection, store: str | None, limit: int) -> list[dict[str, Any]]:
    """Alerts nobody has acknowledged, newest first."""
    rows = select_limited(
        conn, "SELECT a.id, a.ts, a.store, a.kind, a.severity, a.detail FROM alerts a",
        [("a.store = ?", store)], "a.id DESC", limit, fixed=[_OPEN])
    return [{"id": int(i), "ts": ts, "store": s, "kind": k, "severity": sev,
             "detail": _json(d)} for i, ts, s, k, sev, d in rows]


def pending_commands(conn: Connection, store: str, limit: int = 200) -> list[dict[str, Any]]:
    """Commands issued to ``store`` that it has not acknowledged yet, oldest first."""
    rows = conn.execute("SELECT acked_cseq FROM stores WHERE store = ?", (store,))
    acked = int(rows[0][0] or 0) if rows else 0
    return [{"cseq": int(cseq), "id": cid, "type": ctype, "created": created}
            for cseq, cid, ctype, created in conn.execute(
                "SELECT cseq, id, type, created FROM commands WHERE store = ? AND cseq > ? "
                "ORDER BY cseq LIMIT ?", (store, acked, limit))]


def ack_alert(conn: Connection, alert_id: int, ts: str, note: str | None) -> str:
    """``acked`` (now acknowledged), ``already`` (it was), or ``unknown`` (no such alert)."""
    conn.begin_write()
    try:
        if not conn.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)):
            conn.rollback()
            return "unknown"
        if conn.execute("SELECT 1 FROM alert_acks WHERE id = ?", (alert_id,)):
            conn.rollback()
            return "already"
        conn.execute("INSERT INTO alert_acks (id, acked_at, note) VALUES (?, ?, ?)",
                     (alert_id, ts, note))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return "acked"
