"""SQL of the RFID tables (``m0005_rfid``): floor and sold EPC sets, count sessions,
accuracy, exit-alert memory, retention. Every function takes a query function or a
:class:`~edge_agent.ledger.Tx`; none holds state."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edge_agent.ledger import Tx

__all__ = [
    "accuracy_rows",
    "apply_retention",
    "count_row",
    "exit_verdict",
    "located",
    "record_returned",
    "record_sold",
    "save_floor",
    "skus_for_gtins",
    "sold_among",
]

QueryFn = Callable[[str, Sequence[Any]], list[sqlite3.Row]]
_CHUNK = 900  # bound parameters per IN (...) list


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def sold_among(query: QueryFn, epcs: Iterable[str]) -> set[str]:
    """The EPCs of ``epcs`` that are sold now (sold and not returned since)."""
    out: set[str] = set()
    wanted = list(epcs)
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        out.update(str(r[0]) for r in query(
            f"SELECT epc FROM rfid_sold WHERE returned_at IS NULL AND epc IN ({marks})", chunk))
    return out


def skus_for_gtins(query: QueryFn, gtins: Iterable[str]) -> dict[str, str | None]:
    wanted = sorted(set(gtins))
    out: dict[str, str | None] = dict.fromkeys(wanted)
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        for row in query(f"SELECT gtin, sku FROM catalog_gtins WHERE gtin IN ({marks})", chunk):
            out[str(row[0])] = str(row[1])
    return out


def located(query: QueryFn) -> list[tuple[str, str, str]]:
    """(epc, sku, zone) of every EPC located on the floor, of a known SKU, not sold now."""
    rows = query(
        "SELECT f.epc, f.sku, f.zone FROM rfid_floor AS f "
        "LEFT JOIN rfid_sold AS s ON s.epc = f.epc AND s.returned_at IS NULL "
        "WHERE f.sku IS NOT NULL AND s.epc IS NULL", ())
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def save_floor(tx: Tx, rows: Sequence[tuple[str, str, str | None, str, float]]) -> None:
    """Upsert (epc, gtin, sku, zone, seen_at): the EPC's latest zone and sighting."""
    tx.executemany(
        "INSERT INTO rfid_floor (epc, gtin, sku, zone, last_seen) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (epc) DO UPDATE SET gtin = excluded.gtin, sku = excluded.sku, "
        # A late flush of an older sighting must not move the tag back to an old zone.
        "zone = CASE WHEN excluded.last_seen >= last_seen THEN excluded.zone ELSE zone END, "
        "last_seen = max(last_seen, excluded.last_seen)", rows)


def record_sold(tx: Tx, rows: Sequence[tuple[str, str, str]], sale_id: str,
                now: float) -> None:
    """(epc, gtin, sku) sold by ``sale_id``: sold now, whatever happened to it before."""
    tx.executemany(
        "INSERT INTO rfid_sold (epc, gtin, sku, sale_id, sold_at, returned_at, return_id) "
        "VALUES (?, ?, ?, ?, ?, NULL, NULL) ON CONFLICT (epc) DO UPDATE SET "
        "gtin = excluded.gtin, sku = excluded.sku, sale_id = excluded.sale_id, "
        "sold_at = excluded.sold_at, returned_at = NULL, return_id = NULL",
        [(epc, gtin, sku, sale_id, now) for epc, gtin, sku in rows])


def record_returned(tx: Tx, rows: Sequence[tuple[str, str, str]], return_id: str,
                    now: float) -> None:
    """(epc, gtin, sku) brought back by ``return_id``: not sold any more. An EPC the store
    never sold (bought elsewhere in the chain) is recorded as returned too, so that its
    exit grace applies."""
    tx.executemany(
        "INSERT INTO rfid_sold (epc, gtin, sku, sale_id, sold_at, returned_at, return_id) "
        "VALUES (?, ?, ?, '', ?, ?, ?) ON CONFLICT (epc) DO UPDATE SET "
        "returned_at = excluded.returned_at, return_id = excluded.return_id",
        [(epc, gtin, sku, now, now, return_id) for epc, gtin, sku in rows])


def exit_verdict(tx: Tx, epc: str, now: float, grace_s: float) -> str | None:
    """Why a tag passing a door raises no alert (``sold``, ``returned_recently``,
    ``alerted_recently``), or None: raise one (and remember it)."""
    rows = tx.query("SELECT sold_at, returned_at FROM rfid_sold WHERE epc = ?", (epc,))
    if rows:
        returned_at = rows[0]["returned_at"]
        if returned_at is None:
            return "sold"
        if now - float(returned_at) < grace_s:
            return "returned_recently"
    rows = tx.query("SELECT alerted_at FROM rfid_exit_alerts WHERE epc = ?", (epc,))
    if rows and now - float(rows[0][0]) < max(grace_s, 60.0):
        return "alerted_recently"
    tx.execute("INSERT INTO rfid_exit_alerts (epc, alerted_at) VALUES (?, ?) "
               "ON CONFLICT (epc) DO UPDATE SET alerted_at = excluded.alerted_at", (epc, now))
    return None


def on_floor(tx: Tx, epc: str) -> bool:
    return bool(tx.query("SELECT 1 FROM rfid_floor WHERE epc = ?", (epc,)))


def _trim(tx: Tx, table: str, column: str, keep: int) -> int:
    rows = tx.query(f"SELECT count(*) FROM {table}")
    excess = int(rows[0][0]) - keep
    if excess <= 0:
        return 0
    return tx.execute(
        f"DELETE FROM {table} WHERE epc IN (SELECT epc FROM {table} "
        f"ORDER BY {column} LIMIT ?)", (excess,)).rowcount


def apply_retention(tx: Tx, *, cutoff: float, alert_cutoff: float, max_floor: int,
                    max_sold: int) -> int:
    """Forget floor sightings and sales older than ``cutoff``, exit-alert memory older than
    ``alert_cutoff``, then the oldest rows past the bounds. Rows deleted."""
    deleted = tx.execute("DELETE FROM rfid_floor WHERE last_seen < ?", (cutoff,)).rowcount
    deleted += tx.execute("DELETE FROM rfid_sold WHERE max(sold_at, coalesce(returned_at, 0)) "
                          "< ?", (cutoff,)).rowcount
    deleted += tx.execute("DELETE FROM rfid_exit_alerts WHERE alerted_at < ?",
                          (alert_cutoff,)).rowcount
    deleted += tx.execute("DELETE FROM rfid_basket_tags WHERE basket_id NOT IN "
                          "(SELECT basket_id FROM baskets)").rowcount  # cancelled baskets
    deleted += _trim(tx, "rfid_floor", "last_seen", max_floor)
    deleted += _trim(tx, "rfid_sold", "sold_at", max_sold)
    return deleted


def count_row(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count_id": row["count_id"], "status": row["status"],
        "zones": json.loads(row["zones"]) if row["zones"] else None,
        "opened_at": row["opened_at"], "closed_at": row["closed_at"], "seq": row["seq"],
    }
    if row["result"]:
        out["result"] = json.loads(row["result"])
    return out


def accuracy_rows(conn: sqlite3.Connection, sku: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT sku, counted_ts, count_id, counted, expected, variance FROM rfid_accuracy"
           + (" WHERE sku = ?" if sku is not None else "") + " ORDER BY sku")
    rows = conn.execute(sql, (sku,) if sku is not None else ()).fetchall()
    return [{"sku": r[0], "last_counted_at": r[1], "count_id": r[2], "counted": r[3],
             "expected": r[4], "variance": r[5]} for r in rows]
