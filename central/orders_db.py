"""Tables of the omnichannel loop (orders, assignments, history, holds, counts, store
attributes, last contact) and the read queries of the order API. Additive: created with
``IF NOT EXISTS`` next to the central's schema, on SQLite and PostgreSQL alike, without
changing its SCHEMA_VERSION.
"""

from __future__ import annotations

from typing import Any

import orjson

from central.queries import select_limited
from central.storage import Connection

_DDL = (
    "CREATE TABLE IF NOT EXISTS omni_orders (order_id TEXT PRIMARY KEY, sha TEXT NOT NULL, "
    "channel TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL "
    "DEFAULT 0, created TEXT NOT NULL, updated TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS omni_orders_state ON omni_orders (state)",
    "CREATE TABLE IF NOT EXISTS omni_assignments (reservation_id TEXT PRIMARY KEY, "
    "order_id TEXT NOT NULL, store TEXT NOT NULL, lines TEXT NOT NULL, state TEXT NOT NULL, "
    "accept_by DOUBLE PRECISION NOT NULL, created TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS omni_assignments_order ON omni_assignments (order_id)",
    "CREATE INDEX IF NOT EXISTS omni_assignments_state ON omni_assignments (state)",
    "CREATE TABLE IF NOT EXISTS omni_history (order_id TEXT NOT NULL, n BIGINT NOT NULL, "
    "ts TEXT NOT NULL, event TEXT NOT NULL, store TEXT, detail TEXT NOT NULL, "
    "PRIMARY KEY (order_id, n))",
    "CREATE TABLE IF NOT EXISTS omni_holds (store TEXT NOT NULL, sku TEXT NOT NULL, "
    "qty BIGINT NOT NULL, PRIMARY KEY (store, sku))",
    "CREATE TABLE IF NOT EXISTS omni_counts (store TEXT NOT NULL, sku TEXT NOT NULL, "
    "counted_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL, PRIMARY KEY (store, sku))",
    "CREATE TABLE IF NOT EXISTS omni_stores (store TEXT PRIMARY KEY, attrs TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS omni_contact (store TEXT PRIMARY KEY, "
    "last_contact DOUBLE PRECISION NOT NULL, day TEXT NOT NULL DEFAULT '', "
    "day_orders BIGINT NOT NULL DEFAULT 0)",
    # network ATP reads one SKU across stores: the stock table's key is (store, sku)
    "CREATE INDEX IF NOT EXISTS stock_by_sku ON stock (sku)",
    "CREATE INDEX IF NOT EXISTS catalog_by_sku ON catalog (sku)",
)

ACTIVE = ("assigned", "accepted", "picked", "packed", "ready", "fulfilled")
"""Assignment states that cover an order's lines (the rest were rejected, timed out,
cancelled or released)."""


def create_tables(conn: Connection) -> None:
    """Create the omnichannel tables in their own transaction (idempotent)."""
    conn.begin_write()
    try:
        for statement in _DDL:
            conn.execute(statement)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def add_history(conn: Connection, order_id: str, ts: str, *, event: str, store: str | None,
                detail: dict[str, Any] | None = None) -> None:
    rows = conn.execute("SELECT COALESCE(MAX(n), 0) FROM omni_history WHERE order_id = ?",
                        (order_id,))
    conn.execute("INSERT INTO omni_history (order_id, n, ts, event, store, detail) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 (order_id, int(rows[0][0]) + 1, ts, event, store,
                  orjson.dumps(detail or {}).decode()))


def assignments(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    return [{"reservation_id": rid, "store": store, "lines": orjson.loads(lines),
             "state": state, "accept_by": float(accept_by), "created": created}
            for rid, store, lines, state, accept_by, created in conn.execute(
                "SELECT reservation_id, store, lines, state, accept_by, created FROM "
                "omni_assignments WHERE order_id = ? ORDER BY created, reservation_id",
                (order_id,))]


def order_row(conn: Connection, order_id: str) -> dict[str, Any] | None:
    rows = conn.execute("SELECT order_id, sha, channel, body, state, attempts, created, "
                        "updated FROM omni_orders WHERE order_id = ?", (order_id,))
    if not rows:
        return None
    oid, sha, channel, body, state, attempts, created, updated = rows[0]
    return {"order_id": oid, "sha": sha, "channel": channel, "request": orjson.loads(body),
            "state": state, "attempts": int(attempts), "created": created,
            "updated": updated}


def order_detail(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """One order as the API shows it: request, state, assignments and history."""
    row = order_row(conn, order_id)
    if row is None:
        return None
    row.pop("sha")
    row["assignments"] = assignments(conn, order_id)
    row["history"] = [
        {"n": int(n), "ts": ts, "event": event, "store": store, "detail": orjson.loads(d)}
        for n, ts, event, store, d in conn.execute(
            "SELECT n, ts, event, store, detail FROM omni_history WHERE order_id = ? "
            "ORDER BY n", (order_id,))]
    return row


def list_orders(conn: Connection, state: str | None, limit: int) -> list[dict[str, Any]]:
    rows = select_limited(
        conn, "SELECT order_id, channel, state, attempts, created, updated FROM omni_orders",
        [("state = ?", state)], "created DESC, order_id", limit)
    return [{"order_id": o, "channel": c, "state": s, "attempts": int(a), "created": cr,
             "updated": u} for o, c, s, a, cr, u in rows]
