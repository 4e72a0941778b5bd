"""Retail reads: stock, low stock, movements, reservations, sale records, code lookup.

Each runs on a read snapshot (``ledger.read``), off the event loop.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.retail.base import RetailBase
from edge_agent.retail.catalog import CatalogView, QueryFn, ScannedItem, conn_query, scan_code
from edge_agent.retail.money import format_money, format_price
from sync.wire import canonical_json, loads


def _reservation_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "reservation_id": row["reservation_id"], "order_ref": row["order_ref"],
        "lines": json.loads(row["lines"]), "remaining": json.loads(row["remaining"]),
        "expires_at": row["expires_at"], "status": row["status"],
        "cancel_requested": bool(row["cancel_requested"]), "closed_seq": row["closed_seq"],
    }


def _scan_details(scanned: ScannedItem) -> dict[str, Any]:
    """What a 2D code or Digital Link told the till beyond the GTIN (lookup answers)."""
    info = scanned.info
    out: dict[str, Any] = {key: value for key, value in (("batch", info.batch),
                                                         ("serial", info.serial))
                           if value is not None}
    for key, date in (("expiry", info.expiry), ("best_before", info.best_before)):
        if date is not None:
            out[key] = date.isoformat()
    if scanned.notices:
        out["notices"] = list(scanned.notices)
    return out


def read_low_stock(conn: sqlite3.Connection, limit: int) -> dict[str, Any]:
    """Active catalog items and uncatalogued stocked SKUs whose available quantity is at or
    below ``limit``, lowest first (also the offline CLI's ``stock low``)."""
    rows = conn.execute(
        "SELECT c.sku AS sku, c.name AS name, coalesce(s.on_hand, 0) AS on_hand, "
        "coalesce(s.reserved, 0) AS reserved, "
        "coalesce(s.on_hand, 0) - coalesce(s.reserved, 0) AS available FROM catalog c "
        "LEFT JOIN stock s ON s.sku = c.sku WHERE c.active = 1 "
        "AND coalesce(s.on_hand, 0) - coalesce(s.reserved, 0) <= ? "
        "UNION ALL SELECT s.sku, NULL, s.on_hand, s.reserved, s.on_hand - s.reserved "
        "FROM stock s WHERE s.sku NOT IN (SELECT sku FROM catalog) "
        "AND s.on_hand - s.reserved <= ? ORDER BY available, sku",
        (limit, limit),
    ).fetchall()
    return {"threshold": limit, "items": [
        {"sku": r["sku"], "name": r["name"], "on_hand": int(r["on_hand"]),
         "reserved": int(r["reserved"]),
         "available": int(r["on_hand"]) - int(r["reserved"])} for r in rows]}


class Queries(RetailBase):
    """The store's retail answers, read-only."""

    async def stock_item(self, sku: str) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute("SELECT on_hand, reserved FROM stock WHERE sku = ?",
                               (sku,)).fetchone()
            item = CatalogView(conn_query(conn)).item(sku)
            if item is None and row is None:
                raise OperationError("sku_not_found", f"no catalog item or stock for SKU "
                                     f"{sku!r}", status=404)
            on_hand, reserved = (int(row[0]), int(row[1])) if row else (0, 0)
            return {"sku": sku, "on_hand": on_hand, "reserved": reserved,
                    "available": on_hand - reserved, "in_catalog": item is not None,
                    "name": item.name if item else None,
                    "price": format_price(item.price) if item else None,
                    "currency": item.currency if item else None}

        return await self.ledger.read(read)

    async def stock_list(self, *, limit: int = 1000, after: str = "") -> dict[str, Any]:
        """Every SKU with stock (paged by SKU) and the store's totals."""
        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            items = [
                {"sku": r[0], "on_hand": int(r[1]), "reserved": int(r[2]),
                 "available": int(r[1]) - int(r[2])}
                for r in conn.execute(
                    "SELECT sku, on_hand, reserved FROM stock WHERE sku > ? ORDER BY sku LIMIT ?",
                    (after, limit))
            ]
            tot = conn.execute("SELECT count(*), coalesce(sum(on_hand), 0), "
                               "coalesce(sum(reserved), 0) FROM stock").fetchone()
            return {"items": items, "next_after": items[-1]["sku"] if len(items) == limit
                    else None,
                    "totals": {"skus": int(tot[0]), "on_hand": int(tot[1]),
                               "reserved": int(tot[2]), "available": int(tot[1]) - int(tot[2])}}

        return await self.ledger.read(read)

    async def low_stock(self, threshold: int | None = None) -> dict[str, Any]:
        """Active catalog items (and stocked SKUs) whose available quantity is at or below
        the threshold (store default ``low_stock_threshold``)."""
        limit = self.store.low_stock_threshold if threshold is None else threshold

        return await self.ledger.read(lambda conn: read_low_stock(conn, limit))

    async def movements(self, sku: str, *, limit: int = 100) -> dict[str, Any]:
        """The ledger events that moved this SKU, newest first (as long as they are kept)."""
        needle = canonical_json({"sku": sku})[1:-1]  # "sku":"<sku>" as canonical JSON writes it

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            out = []
            for row in conn.execute(
                "SELECT e.seq, e.type, e.ts, e.payload, p.epoch FROM events e "
                "JOIN epochs p ON p.ordinal = e.epoch_ordinal "
                "WHERE instr(e.payload, ?) > 0 ORDER BY e.id DESC", (needle,),
            ):
                event = loads(bytes(row["payload"]))
                stock = sum(d["delta"] for d in event.get("stock", []) if d["sku"] == sku)
                reserve = sum(d["delta"] for d in event.get("reserve", []) if d["sku"] == sku)
                if not any(d["sku"] == sku for d in
                           event.get("stock", []) + event.get("reserve", [])):
                    continue
                out.append({"epoch": row["epoch"], "seq": int(row["seq"]), "type": row["type"],
                            "ts": row["ts"], "stock": stock, "reserve": reserve,
                            "data": event.get("data", {})})
                if len(out) >= limit:
                    break
            return {"sku": sku, "movements": out}

        return await self.ledger.read(read)

    async def reservations(self, status: str | None = None) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if status is None:
                rows = conn.execute("SELECT * FROM reservations ORDER BY reservation_id")
            else:
                rows = conn.execute("SELECT * FROM reservations WHERE status = ? "
                                    "ORDER BY reservation_id", (status,))
            return [_reservation_row(r) for r in rows]

        return await self.ledger.read(read)

    async def reservation(self, reservation_id: str) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT * FROM reservations WHERE reservation_id = ?",
                               (reservation_id,)).fetchone()
            return None if row is None else _reservation_row(row)

        found = await self.ledger.read(read)
        if found is None:
            raise OperationError("reservation_not_found", f"no reservation {reservation_id}",
                                 status=404)
        return found

    async def sale_record(self, sale_id: str) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT * FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
            if row is None:
                return None
            returned = {r[0]: int(r[1]) for r in conn.execute(
                "SELECT sku, sum(qty) FROM return_lines WHERE sale_id = ? GROUP BY sku",
                (sale_id,))}
            lines = [{"line_no": n, **x} for n, x in enumerate(loads(row["lines"]), start=1)]
            return {"sale_id": sale_id, "epoch": row["epoch"], "seq": int(row["seq"]),
                    "ts": row["ts"], "terminal": row["terminal"], "total": row["total"],
                    "currency": row["currency"], "customer": row["customer"], "lines": lines,
                    "returned": [{"sku": s, "qty": q} for s, q in sorted(returned.items())]}

        found = await self.ledger.read(read)
        if found is None:
            raise OperationError("sale_not_found", f"no sale {sale_id} in this store",
                                 status=404)
        return found

    def _lookup(self, query: QueryFn, code: str) -> dict[str, Any]:
        scanned = scan_code(CatalogView(query), code, self.rules, "lookup")
        item = scanned.item
        rows = query("SELECT on_hand, reserved FROM stock WHERE sku = ?", (item.sku,))
        on_hand, reserved = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        out: dict[str, Any] = {
            "code": scanned.info.raw, "kind": scanned.info.kind, "via": scanned.via,
            "sku": item.sku, "name": item.name, "price": format_price(item.price),
            "currency": item.currency, "uom": item.uom, "active": item.active,
            "on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved,
        }
        if scanned.gtin is not None:
            out["gtin"] = scanned.gtin
        if scanned.qty is not None:
            out["qty"] = scanned.qty
        if scanned.line_total is not None:
            out["line_total"] = format_money(scanned.line_total, self.currency)
        out.update(_scan_details(scanned))
        return out

    async def lookup(self, code: str) -> dict[str, Any]:
        """Price and stock of a scanned/typed code (a SKU, GTIN, alias or barcode)."""
        return await self.ledger.read(lambda conn: self._lookup(conn_query(conn), code))
