"""Recalls at central: which recalls each store holds (from the ``recall.add`` /
``recall.lift`` commands central issued, and whether the store acknowledged them),
and where a recalled lot was still found — each ``recall.blocked`` event a store sends
is counted per store and recall in ``recall_sightings`` and raises a ``recall_blocked``
alert.  The wire format is :mod:`sync.recalls`; docs/protocol.md "Recalls".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from central.storage import Connection
from sync.recalls import RECALL_ADD, RECALL_TYPES

__all__ = ["active_recalls", "recall_overview", "record_blocked"]


def record_blocked(conn: Connection, store: str, event: Mapping[str, Any],
                   ts: str) -> dict[str, Any] | None:
    """Count one ``recall.blocked`` event; the alert detail, or None if it is unreadable."""
    data = event.get("data")
    if not isinstance(data, Mapping):
        return None
    recall_id, gtin = data.get("recall_id"), data.get("gtin")
    if not isinstance(recall_id, str) or not isinstance(gtin, str):
        return None
    lot, serial = data.get("lot"), data.get("serial")
    lot = lot if isinstance(lot, str) else None
    serial = serial if isinstance(serial, str) else None
    conn.execute(
        "INSERT INTO recall_sightings (store, recall_id, gtin, lot, serial, attempts, "
        "first_ts, last_ts) VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (store, recall_id) "
        "DO UPDATE SET attempts = recall_sightings.attempts + 1, last_ts = excluded.last_ts",
        (store, recall_id[:64], gtin[:14], lot, serial, ts, ts))
    detail = {"recall_id": recall_id[:64], "gtin": gtin[:14], "event_id": event.get("id"),
              "source": data.get("source"), "terminal": data.get("terminal")}
    if lot is not None:
        detail["lot"] = lot
    if serial is not None:
        detail["serial"] = serial
    return {k: v for k, v in detail.items() if v is not None}


def active_recalls(conn: Connection, store: str | None = None) -> dict[tuple[str, str],
                                                                        dict[str, Any]]:
    """(store, recall_id) -> the recall's data, cseq and whether the store acked it."""
    sql = ("SELECT c.store, c.cseq, c.type, c.body, s.acked_cseq FROM commands c "
           "JOIN stores s ON s.store = c.store WHERE c.type IN (?, ?)")
    params: list[Any] = sorted(RECALL_TYPES)
    if store is not None:
        sql += " AND c.store = ?"
        params.append(store)
    active: dict[tuple[str, str], dict[str, Any]] = {}
    for st, cseq, kind, body, acked in sorted(conn.execute(sql + " ORDER BY c.store, c.cseq",
                                                            params)):
        data = orjson.loads(body).get("data", {})
        key = (str(st), str(data.get("recall_id")))
        if kind == RECALL_ADD:
            active[key] = {**data, "cseq": int(cseq),
                           "delivered": acked is not None and int(acked) >= int(cseq)}
        else:
            active.pop(key, None)
    return active


def recall_overview(conn: Connection) -> list[dict[str, Any]]:
    """Every active recall with the stores holding it and where it was found at a till."""
    recalls: dict[str, dict[str, Any]] = {}
    for (store, recall_id), data in active_recalls(conn).items():
        entry = recalls.setdefault(recall_id, {
            "recall_id": recall_id, "gtin": data.get("gtin"), "lot": data.get("lot"),
            "serial": data.get("serial"), "reason": data.get("reason", ""),
            "stores": [], "found_at": []})
        entry["stores"].append({"store": store, "cseq": data["cseq"],
                                "delivered": data["delivered"]})
    for store, recall_id, attempts, first_ts, last_ts in conn.execute(
            "SELECT store, recall_id, attempts, first_ts, last_ts FROM recall_sightings "
            "ORDER BY store"):
        if recall_id in recalls:
            recalls[recall_id]["found_at"].append({
                "store": store, "attempts": int(attempts), "first_ts": first_ts,
                "last_ts": last_ts})
    return [{k: v for k, v in r.items() if v is not None}
            for _, r in sorted(recalls.items())]
