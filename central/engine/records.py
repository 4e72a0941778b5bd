"""Central's own record of an issued command: one recorder per command type that changes
central's tables (catalog, reservations, count requests), in a table. Stock and reserve
lines are added by :meth:`central.engine.commands.CommandsMixin._apply_command` itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from central.storage import Connection
from sync.wire import canonical_json

Recorder = Callable[[Connection, str, dict[str, Any]], None]
"""(conn, store, the command's data), inside the transaction that issues it."""


def _catalog_upsert(conn: Connection, store: str, data: dict[str, Any]) -> None:
    conn.executemany(
        "INSERT INTO catalog (store, sku, item) VALUES (?, ?, ?) ON CONFLICT "
        "(store, sku) DO UPDATE SET item = excluded.item",
        [(store, i["sku"], canonical_json(i).decode()) for i in data["items"]])


def _catalog_remove(conn: Connection, store: str, data: dict[str, Any]) -> None:
    conn.executemany("DELETE FROM catalog WHERE store = ? AND sku = ?",
                     [(store, s) for s in data["skus"]])


def _reservation(conn: Connection, store: str, data: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO reservations (store, reservation_id, order_ref, lines, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (store, data["reservation_id"], data.get("order_ref", data.get("order_id")),
         canonical_json([{"sku": ln["sku"], "qty": ln["qty"]}
                         for ln in data["lines"]]).decode(),
         data.get("expires_at")))


def _reservation_cancel(conn: Connection, store: str, data: dict[str, Any]) -> None:
    conn.execute("UPDATE reservations SET cancel_requested = 1 WHERE store = ? AND "
                 "reservation_id = ?", (store, data["reservation_id"]))


def _count_request(conn: Connection, store: str, data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO count_requests (store, count_id, skus) VALUES (?, ?, ?)",
                 (store, data["count_id"], canonical_json(data["skus"]).decode()))


RECORDERS: dict[str, Recorder] = {
    "catalog.upsert": _catalog_upsert,
    "catalog.remove": _catalog_remove,
    "reservation.create": _reservation,
    "order.assign": _reservation,
    "reservation.cancel": _reservation_cancel,
    "count.request": _count_request,
}
"""Command type → its recorder; the other types change no table of central's."""
