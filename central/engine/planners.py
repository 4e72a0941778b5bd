"""Command planning: one planner per command type, in a table. A planner validates an
operator's command spec and returns the command's ``data`` with its stock and reserve
lines; :func:`plan` wraps that into the command as issued (id, ts; cseq set later)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import ValidationError

from central.customer_registry import COMMAND_TYPES as CUSTOMER_COMMANDS
from central.customer_registry import check_command as check_customer_command
from central.errors import InvalidCommandError
from central.order_commands import ORDER_COMMANDS, plan_order_command
from central.storage import Connection
from sync.errors import WireFormatError
from sync.messages import CatalogItem
from sync.recalls import RECALL_TYPES, RecallInvalid, check_recall
from sync.wire import SKU_RE, check_deltas

Lines = list[dict[str, Any]]


class Plan(NamedTuple):
    """A planned command's ``data`` and its ``stock`` and ``reserve`` lines."""

    data: dict[str, Any]
    stock: Lines
    reserve: Lines


Planner = Callable[[Connection, str, str, dict[str, Any], dict[str, Any]], Plan]
"""(conn, store, type, spec, a copy of the spec's data) → :class:`Plan`; raises
:class:`InvalidCommandError`."""


def _valid_skus(skus: Any) -> bool:
    return isinstance(skus, list) and bool(skus) and all(
        isinstance(s, str) and SKU_RE.fullmatch(s) for s in skus)


def _stock_adjust(_conn: Connection, _store: str, _kind: str, spec: dict[str, Any],
                  data: dict[str, Any]) -> Plan:
    try:
        pairs = check_deltas(spec.get("stock"), "stock")
    except WireFormatError as exc:
        raise InvalidCommandError(str(exc)) from exc
    if not pairs or not isinstance(data.get("reason"), str):
        raise InvalidCommandError("stock.adjust needs a reason and at least one line")
    return Plan(data, [{"sku": s, "delta": d} for s, d in pairs], [])


def _catalog_upsert(_conn: Connection, _store: str, _kind: str, _spec: dict[str, Any],
                    data: dict[str, Any]) -> Plan:
    items = data.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidCommandError("catalog.upsert needs items")
    try:
        data["items"] = [CatalogItem.model_validate(i).model_dump(mode="json")
                         for i in items]
    except ValidationError as exc:
        raise InvalidCommandError(f"invalid catalog item: {exc}") from exc
    return Plan(data, [], [])


def _catalog_remove(_conn: Connection, _store: str, _kind: str, _spec: dict[str, Any],
                    data: dict[str, Any]) -> Plan:
    if not _valid_skus(data.get("skus")):
        raise InvalidCommandError("catalog.remove needs a list of valid SKUs")
    return Plan(data, [], [])


def _reservation_create(conn: Connection, store: str, _kind: str, _spec: dict[str, Any],
                        data: dict[str, Any]) -> Plan:
    rid, ref = data.get("reservation_id"), data.get("order_ref")
    lines = data.get("lines")
    if not isinstance(rid, str) or not rid or not isinstance(ref, str):
        raise InvalidCommandError("reservation.create needs reservation_id and order_ref")
    if not isinstance(lines, list) or not lines:
        raise InvalidCommandError("reservation.create needs lines")
    for line in lines:
        if (not isinstance(line, dict) or not isinstance(line.get("sku"), str)
                or SKU_RE.fullmatch(line["sku"]) is None
                or type(line.get("qty")) is not int or line["qty"] <= 0):
            raise InvalidCommandError(f"invalid reservation line {line!r}")
    if conn.execute("SELECT 1 FROM reservations WHERE store = ? AND reservation_id = ?",
                    (store, rid)):
        raise InvalidCommandError(f"reservation {rid} already exists for {store}")
    data["lines"] = [{"sku": ln["sku"], "qty": ln["qty"]} for ln in lines]
    data.setdefault("expires_at", None)
    return Plan(data, [], [{"sku": ln["sku"], "delta": ln["qty"]} for ln in lines])


def _reservation_cancel(conn: Connection, store: str, _kind: str, _spec: dict[str, Any],
                        data: dict[str, Any]) -> Plan:
    rid = data.get("reservation_id")
    rows = conn.execute(
        "SELECT state, cancel_requested FROM reservations WHERE store = ? AND "
        "reservation_id = ?", (store, rid))
    if not rows:
        raise InvalidCommandError(f"no reservation {rid!r} for {store}")
    if rows[0][0] != "open":
        raise InvalidCommandError(f"reservation {rid} is already {rows[0][0]}")
    return Plan({"reservation_id": rid}, [], [])


def _count_request(conn: Connection, store: str, _kind: str, _spec: dict[str, Any],
                   data: dict[str, Any]) -> Plan:
    cid = data.get("count_id")
    if not isinstance(cid, str) or not cid:
        raise InvalidCommandError("count.request needs count_id")
    if not _valid_skus(data.get("skus")):
        raise InvalidCommandError("count.request needs a list of valid SKUs")
    if conn.execute("SELECT 1 FROM count_requests WHERE store = ? AND count_id = ?",
                    (store, cid)):
        raise InvalidCommandError(f"count request {cid} already exists for {store}")
    return Plan(data, [], [])


def _resync(_conn: Connection, _store: str, _kind: str, _spec: dict[str, Any],
            _data: dict[str, Any]) -> Plan:
    return Plan({}, [], [])


def _recall(_conn: Connection, _store: str, kind: str, _spec: dict[str, Any],
            data: dict[str, Any]) -> Plan:
    """Extension, docs/protocol.md "Recalls"."""
    try:
        return Plan(check_recall(kind, data), [], [])
    except RecallInvalid as exc:
        raise InvalidCommandError(f"{kind}: {exc}") from exc


def _customer(_conn: Connection, _store: str, kind: str, _spec: dict[str, Any],
              data: dict[str, Any]) -> Plan:
    """docs/protocol.md §5.1 extension."""
    return Plan(check_customer_command(kind, data), [], [])


def _order(conn: Connection, store: str, kind: str, _spec: dict[str, Any],
           data: dict[str, Any]) -> Plan:
    data, reserve = plan_order_command(conn, store, kind, data)
    return Plan(data, [], reserve)


PLANNERS: dict[str, Planner] = {
    **dict.fromkeys(ORDER_COMMANDS, _order),
    **dict.fromkeys(CUSTOMER_COMMANDS, _customer),
    **dict.fromkeys(RECALL_TYPES, _recall),
    "stock.adjust": _stock_adjust,
    "catalog.upsert": _catalog_upsert,
    "catalog.remove": _catalog_remove,
    "reservation.create": _reservation_create,
    "reservation.cancel": _reservation_cancel,
    "count.request": _count_request,
    "resync": _resync,
}
"""Command type → its planner (a later entry wins: the core types over the extensions)."""


def plan(conn: Connection, store: str, spec: dict[str, Any], ts: str) -> dict[str, Any]:
    """The command ``spec`` asks for, validated and planned (``cseq`` still 0)."""
    kind = spec.get("type")
    if not isinstance(kind, str) or (planner := PLANNERS.get(kind)) is None:
        raise InvalidCommandError(f"unknown command type {kind!r}")
    data, stock, reserve = planner(conn, store, kind, spec, dict(spec.get("data") or {}))
    return {"cseq": 0, "id": str(uuid.uuid4()), "type": kind, "ts": ts, "data": data,
            "stock": stock, "reserve": reserve}
