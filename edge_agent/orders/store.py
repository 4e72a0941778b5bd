"""The fulfilment queue in the ledger: central's ``order.assign`` / ``order.cancel``
commands, each step of an order as one fact, and the reads the API and the CLI share.

Every function runs inside the caller's transaction (a :class:`~edge_agent.ledger.Tx` for
writes, a plain read connection for reads). An order's reservation lives in the
``reservations`` table like any other, so the snapshot, resync and ``/v1/reservations``
see it; this module keeps that row in step with each fact it records.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.ledger import AppendedEvent, Tx
from edge_agent.orders import machine
from edge_agent.orders.machine import Line, Order, Picked
from edge_agent.retail.ops import Fact
from sync.errors import WireFormatError
from sync.wire import check_value, now_ts, parse_ts, utc_now

QueryFn = Callable[[str, Sequence[Any]], list[sqlite3.Row]]
MAX_ID = 128


# -- central's commands ----------------------------------------------------------------------
COMMANDS = frozenset({"order.assign", "order.cancel"})


def wire_safe(value: Any) -> Any:
    """``value`` with what PROTOCOL §2 forbids made harmless: a float becomes its decimal
    string (central should send ``ship_to.lat`` as ``"52.37"``; an order is not dropped
    for sending ``52.37``), anything else that fails the check is left out."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: wire_safe(v) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list):
        return [wire_safe(v) for v in value]
    try:
        check_value(value)
    except WireFormatError:
        return None
    return value


def _assign_lines(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list) or not value:
        return None
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            return None
        sku, qty, line_no = item.get("sku"), item.get("qty"), item.get("line_no", index)
        if not isinstance(sku, str) or not sku or type(qty) is not int or qty <= 0 \
                or type(line_no) is not int:
            return None
        out.append({"line_no": line_no, "sku": sku, "qty": qty})
    return out


def _short_str(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID else None


def _hold_only(tx: Tx, rid: str, order_ref: str, reserve: Sequence[tuple[str, int]],
               cseq: int) -> None:
    """A reservation row for what an unusable ``order.assign`` reserved, so that central's
    ``order.cancel`` (or a ``reservation.cancel``) can still take it down."""
    lines = [{"sku": s, "qty": q} for s, q in reserve if q > 0]
    if lines:
        tx.execute(
            "INSERT INTO reservations (reservation_id, order_ref, lines, remaining, "
            "expires_at, status, cancel_requested, created_cseq) "
            "VALUES (?, ?, ?, ?, NULL, 'open', 0, ?)",
            (rid, order_ref, json.dumps(lines), json.dumps(lines), cseq))


def assign(tx: Tx, data: Mapping[str, Any], cseq: int,
           reserve: Sequence[tuple[str, int]] = ()) -> str | None:
    """``order.assign``: the reservation and an incoming order. Returns a problem (the
    command is then flagged; its reserve list was applied, and, when the command names a
    new reservation, that is recorded so a cancel can release it)."""
    order_id, rid = _short_str(data.get("order_id")), _short_str(data.get("reservation_id"))
    if rid is not None and tx.query("SELECT 1 FROM reservations WHERE reservation_id = ?",
                                    (rid,)):
        return f"duplicate reservation {rid!r} (lists applied)"
    lines = _assign_lines(data.get("lines"))
    fulfilment = data.get("fulfilment")
    if order_id is None or rid is None or lines is None \
            or fulfilment not in machine.FULFILMENTS:
        if rid is not None:
            _hold_only(tx, rid, order_id or "", reserve, cseq)
        return ("order.assign without order_id, reservation_id, valid lines or a pickup/ship "
                "fulfilment (lists applied; no order queued)")
    accept_by = data.get("accept_by")
    if accept_by is not None:
        try:
            parse_ts(str(accept_by))
        except WireFormatError:
            accept_by = None
    code_hash = data.get("pickup_code_hash")
    ship_to = data.get("ship_to")
    by_sku: dict[str, int] = {}
    for line in lines:
        by_sku[line["sku"]] = by_sku.get(line["sku"], 0) + line["qty"]
    reserved = json.dumps([{"sku": s, "qty": q} for s, q in by_sku.items()])
    tx.execute(
        "INSERT INTO reservations (reservation_id, order_ref, lines, remaining, expires_at, "
        "status, cancel_requested, created_cseq) VALUES (?, ?, ?, ?, NULL, 'open', 0, ?)",
        (rid, order_id, reserved, reserved, cseq))
    at = now_ts()
    tx.execute(
        "INSERT INTO orders (reservation_id, order_id, channel, fulfilment, customer_ref, "
        "lines, accept_by, ship_to, pickup_code_hash, status, history, assigned_cseq, "
        "received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'incoming', ?, ?, ?, ?)",
        (rid, order_id, str(data.get("channel") or "unknown")[:64], fulfilment,
         _short_str(data.get("customer_ref")), json.dumps(lines),
         None if accept_by is None else str(accept_by),
         json.dumps(ship_to) if isinstance(ship_to, dict) else None,
         code_hash if isinstance(code_hash, str) and code_hash else None,
         json.dumps([{"status": "incoming", "at": at, "cseq": cseq}]), cseq, at, at))
    return None


def cancel(tx: Tx, data: Mapping[str, Any]) -> bool:
    """``order.cancel``: release the reservation if it is still open (a
    ``reservation.released`` fact, reason ``cancelled``, with the ``order_id``); False
    (the command is ignored) when the order was handed over, rejected or is unknown."""
    rid = _short_str(data.get("reservation_id"))
    rows = _rows(tx.query, "reservation_id = ?", (rid,)) if rid else []
    if rid is None and _short_str(data.get("order_id")):  # the attempt is not named
        rows = _rows(tx.query, "order_id = ? AND status NOT IN "
                     "('collected', 'shipped', 'rejected', 'cancelled')", (data["order_id"],))
    if not rows:
        return rid is not None and _release_bare(tx, rid, data.get("order_id"))
    row = rows[-1]
    order = _sync_with_reservation(tx, row)
    if not machine.cancellable(order):
        return False
    remaining = _remaining(tx, order.reservation_id)
    release = [(s, q) for s, q in remaining.items() if q > 0]
    fact = Fact("reservation.released",
                {"reservation_id": order.reservation_id, "reason": "cancelled",
                 "order_id": order.order_id,
                 "lines": [{"sku": s, "qty": q} for s, q in release]},
                reserve=tuple((s, -q) for s, q in release))
    reason = data.get("reason") if data.get("reason") in machine.CANCEL_REASONS else None
    _commit_step(tx, row, order, "cancelled", fact, reason=reason)
    return True


def _release_bare(tx: Tx, rid: str, order_id: Any) -> bool:
    """Cancel of a reservation held by an unusable ``order.assign`` (no order queued)."""
    remaining = _remaining(tx, rid)
    if not tx.query("SELECT 1 FROM reservations WHERE reservation_id = ? AND status = 'open'",
                    (rid,)):
        return False
    release = [(s, q) for s, q in remaining.items() if q > 0]
    data: dict[str, Any] = {"reservation_id": rid, "reason": "cancelled",
                            "lines": [{"sku": s, "qty": q} for s, q in release]}
    if _short_str(order_id):
        data["order_id"] = order_id
    fact = Fact("reservation.released", data, reserve=tuple((s, -q) for s, q in release))
    appended = tx.append(fact.type, fact.data, reserve=fact.reserve)
    _close_reservation(tx, fact, appended.seq)
    return True


# -- reads -----------------------------------------------------------------------------------
def _rows(query: QueryFn, where: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    return query(f"SELECT * FROM orders WHERE {where} ORDER BY assigned_cseq", params)


def _order(row: sqlite3.Row) -> Order:
    lines = [Line(int(x["line_no"]), str(x["sku"]), int(x["qty"]))
             for x in json.loads(row["lines"])]
    picked = [Picked(str(x["sku"]), int(x["qty"]), x.get("gtin"), x.get("serial"))
              for x in json.loads(row["picked"])]
    return Order.of(order_id=row["order_id"], reservation_id=row["reservation_id"],
                    fulfilment=row["fulfilment"], status=row["status"], lines=lines,
                    picked=picked, pickup_code_hash=row["pickup_code_hash"])


def _remaining(tx: Tx, reservation_id: str) -> dict[str, int]:
    rows = tx.query("SELECT remaining FROM reservations WHERE reservation_id = ?",
                    (reservation_id,))
    if not rows:
        return {}
    out: dict[str, int] = {}
    for x in json.loads(rows[0]["remaining"]):
        out[str(x["sku"])] = out.get(str(x["sku"]), 0) + int(x["qty"])
    return out


def view(query: QueryFn, row: sqlite3.Row) -> dict[str, Any]:
    """An order as the API and the CLI show it."""
    order = _order(row)
    done = order.picked_by_sku()
    skus = sorted(order.ordered)
    names = {str(r[0]): str(r[1]) for r in query(
        f"SELECT sku, name FROM catalog WHERE sku IN ({','.join('?' * len(skus))})", skus)}
    left = dict(done)
    lines = []
    for line in order.lines:
        got = min(line.qty, left.get(line.sku, 0))
        left[line.sku] = left.get(line.sku, 0) - got
        lines.append({"line_no": line.line_no, "sku": line.sku, "name": names.get(line.sku),
                      "qty": line.qty, "picked": got})
    accept_by = row["accept_by"]
    overdue = False
    if accept_by is not None and row["status"] == "incoming":
        try:
            overdue = parse_ts(accept_by) < utc_now()
        except WireFormatError:
            overdue = False
    return {
        "order_id": order.order_id, "reservation_id": order.reservation_id,
        "status": order.status, "channel": row["channel"], "fulfilment": order.fulfilment,
        "customer_ref": row["customer_ref"], "lines": lines,
        "picked": [p.as_dict() for p in order.picked],
        "accept_by": accept_by, "accept_overdue": overdue,
        "ship_to": json.loads(row["ship_to"]) if row["ship_to"] else None,
        "pickup_code_required": row["pickup_code_hash"] is not None,
        "reason": row["reason"], "tracking": row["tracking"], "parcels": row["parcels"],
        "history": json.loads(row["history"]),
        "received_at": row["received_at"], "updated_at": row["updated_at"],
    }


def read_order(query: QueryFn, order_id: str) -> dict[str, Any]:
    """The newest attempt of ``order_id`` at this store (404 ``order_not_found``)."""
    rows = _rows(query, "order_id = ?", (order_id,))
    if not rows:
        raise OperationError("order_not_found", f"no order {order_id} at this store",
                             status=404)
    return view(query, rows[-1])


OPEN = "open"


def read_orders(query: QueryFn, status: str | None = OPEN,
                limit: int = 200) -> list[dict[str, Any]]:
    """Orders oldest first: ``open`` (not closed), ``all``, or one state."""
    if status in (None, "all"):
        rows = query("SELECT * FROM orders ORDER BY received_at, assigned_cseq LIMIT ?",
                     (limit,))
    elif status == OPEN:
        marks = ",".join("?" * len(machine.CLOSED))
        rows = query(f"SELECT * FROM orders WHERE status NOT IN ({marks}) "
                     "ORDER BY received_at, assigned_cseq LIMIT ?",
                     (*sorted(machine.CLOSED), limit))
    elif status in machine.STATUSES:
        rows = query("SELECT * FROM orders WHERE status = ? "
                     "ORDER BY received_at, assigned_cseq LIMIT ?", (status, limit))
    else:
        raise OperationError("invalid_status", f"status must be open, all or one of "
                             f"{list(machine.STATUSES)}", status=422)
    return [view(query, row) for row in rows]


# -- steps -----------------------------------------------------------------------------------
def _sync_with_reservation(tx: Tx, row: sqlite3.Row) -> Order:
    """An open order whose reservation was taken down another way (a plain
    ``reservation.cancel`` from central, a resync) is cancelled: nothing is held for it."""
    order = _order(row)
    if order.status in machine.CLOSED:
        return order
    rows = tx.query("SELECT status FROM reservations WHERE reservation_id = ?",
                    (order.reservation_id,))
    if rows and rows[0]["status"] == "open":
        return order
    _commit_step(tx, row, order, "cancelled", None, reason="reservation_closed")
    return replace(order, status="cancelled")


def follow_reservation(tx: Tx, reservation_id: str) -> None:
    """After a plain ``reservation.cancel`` released an order's reservation: the order is
    cancelled with it (nothing is held for it any more)."""
    rows = _rows(tx.query, "reservation_id = ?", (reservation_id,))
    if rows:
        _sync_with_reservation(tx, rows[0])


def reconcile(tx: Tx) -> int:
    """After a resync replaced the open reservations with central's: every open order
    whose reservation central no longer holds is cancelled (central released it, so
    nothing is held for it). Returns how many."""
    marks = ",".join("?" * len(machine.CLOSED))
    rows = tx.query(
        f"SELECT o.* FROM orders o LEFT JOIN reservations r USING (reservation_id) "
        f"WHERE o.status NOT IN ({marks}) AND (r.status IS NULL OR r.status != 'open')",
        sorted(machine.CLOSED))
    for row in rows:
        _sync_with_reservation(tx, row)
    return len(rows)


def _close_reservation(tx: Tx, fact: Fact, seq: int) -> None:
    rid = fact.data.get("reservation_id")
    if fact.type in ("order.rejected", "reservation.released"):
        tx.execute("UPDATE reservations SET status = 'released', closed_seq = ?, remaining = ? "
                   "WHERE reservation_id = ?",
                   (seq, json.dumps([{"sku": x["sku"], "qty": 0} for x in fact.data["lines"]]),
                    rid))
    elif fact.type == "fulfilment":
        left = _remaining(tx, str(rid))
        for sku, delta in fact.reserve:
            left[sku] = max(0, left.get(sku, 0) + delta)
        done = all(q <= 0 for q in left.values())
        tx.execute("UPDATE reservations SET remaining = ?, status = ?, closed_seq = ? "
                   "WHERE reservation_id = ?",
                   (json.dumps([{"sku": s, "qty": q} for s, q in left.items()]),
                    "fulfilled" if done else "open", seq if done else None, rid))


def _commit_step(tx: Tx, row: sqlite3.Row, after: Order, status: str, fact: Fact | None,
                 **extra: Any) -> AppendedEvent | None:
    """Record the step: its fact (if any), the reservation, the order row and history."""
    appended: AppendedEvent | None = None
    if fact is not None:
        appended = tx.append(fact.type, fact.data, stock=fact.stock, reserve=fact.reserve)
        _close_reservation(tx, fact, appended.seq)
    at = now_ts()
    history = json.loads(row["history"])
    if status != row["status"] or appended is not None:
        entry: dict[str, Any] = {"status": status, "at": at}
        if appended is not None:
            entry["seq"] = appended.seq
        entry.update({k: v for k, v in extra.items() if v is not None})
        history.append(entry)
    columns = {k: v for k, v in extra.items() if k in ("reason", "tracking", "parcels")}
    sets = "".join(f", {k} = ?" for k in columns)
    tx.execute(
        f"UPDATE orders SET status = ?, picked = ?, history = ?, updated_at = ?{sets} "
        "WHERE reservation_id = ?",
        (status, json.dumps([p.as_dict() for p in after.picked]), json.dumps(history), at,
         *columns.values(), row["reservation_id"]))
    return appended


Step = Callable[[Order], tuple[Order, Fact | None]]


def step(tx: Tx, order_id: str, run: Step, **extra: Any) -> dict[str, Any]:
    """Apply one step to the newest attempt of ``order_id``; the order view plus the event
    its fact was recorded as (None for a picking scan that did not finish the pick)."""
    rows = _rows(tx.query, "order_id = ?", (order_id,))
    if not rows:
        raise OperationError("order_not_found", f"no order {order_id} at this store",
                             status=404)
    row = rows[-1]
    order = _sync_with_reservation(tx, row)
    if order.status != row["status"]:
        row = _rows(tx.query, "reservation_id = ?", (order.reservation_id,))[0]
    after, fact = run(order)
    appended = _commit_step(tx, row, after, after.status, fact, **extra)
    fresh = _rows(tx.query, "reservation_id = ?", (order.reservation_id,))[0]
    event = None if appended is None else {
        "epoch": appended.epoch, "seq": appended.seq, "id": appended.id, "ts": appended.ts,
        "type": fact.type if fact is not None else None}
    return {**view(tx.query, fresh), "event": event}


def reject_step(reason: str) -> Callable[[Tx, str], dict[str, Any]]:
    def run(tx: Tx, order_id: str) -> dict[str, Any]:
        rows = _rows(tx.query, "order_id = ?", (order_id,))
        rid = rows[-1]["reservation_id"] if rows else ""
        remaining = _remaining(tx, str(rid))
        return step(tx, order_id, lambda o: machine.reject(o, reason, remaining),
                    reason=reason)
    return run

