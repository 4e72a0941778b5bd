"""Reservations' life on the store: taken down on cancel or expiry, closed by events.

Central creates reservations (:mod:`edge_agent.command_apply`); only the store takes them
down, with a ``fulfilment`` or a ``reservation.released`` event (PROTOCOL §5.1).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from edge_agent.ledger import Tx
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now


def qty_lines(value: Any) -> list[dict[str, Any]] | None:
    """``[{sku, qty}]`` with positive integer quantities, or None if malformed."""
    if not isinstance(value, list):
        return None
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict):
            return None
        sku, qty = item.get("sku"), item.get("qty")
        if not isinstance(sku, str) or type(qty) is not int or qty <= 0:
            return None
        out.append({"sku": sku, "qty": qty})
    return out


def release(tx: Tx, reservation_id: str, remaining: list[dict[str, Any]], reason: str) -> int:
    """Take an open reservation down with a ``reservation.released`` event."""
    lines = [line for line in remaining if line["qty"] > 0]
    appended = tx.append(
        "reservation.released",
        {"reservation_id": reservation_id, "reason": reason, "lines": lines},
        reserve=[(line["sku"], -line["qty"]) for line in lines],
    )
    tx.execute(
        "UPDATE reservations SET status = 'released', closed_seq = ?, remaining = ? "
        "WHERE reservation_id = ?",
        (appended.seq, json.dumps([{"sku": x["sku"], "qty": 0} for x in lines]), reservation_id),
    )
    return appended.seq


def cancel_reservation(tx: Tx, reservation_id: str) -> bool:
    """Act on a cancel request: release the remaining lines of an open reservation.
    Returns False (ignored) when it is unknown, fulfilled or already released."""
    rows = tx.query(
        "SELECT status, remaining FROM reservations WHERE reservation_id = ?", (reservation_id,)
    )
    if not rows:
        return False
    tx.execute(
        "UPDATE reservations SET cancel_requested = 1 WHERE reservation_id = ?", (reservation_id,)
    )
    if rows[0]["status"] != "open":
        return False
    release(tx, reservation_id, json.loads(rows[0]["remaining"]), "cancelled")
    return True


def next_reservation_expiry(conn: sqlite3.Connection, now: datetime | None = None
                            ) -> float | None:
    """Seconds until the earliest open reservation expires (0 if one is due), or None."""
    moment = now or utc_now()
    soonest: float | None = None
    for (text,) in conn.execute("SELECT expires_at FROM reservations "
                                "WHERE status = 'open' AND expires_at IS NOT NULL"):
        try:
            left = max(0.0, (parse_ts(str(text)) - moment).total_seconds())
        except WireFormatError:
            continue
        soonest = left if soonest is None else min(soonest, left)
    return soonest


def expire_reservations(tx: Tx, now: datetime | None = None) -> int:
    """Release every open reservation whose ``expires_at`` passed by the store's clock."""
    moment = now or utc_now()
    released = 0
    for row in tx.query(
        "SELECT reservation_id, remaining, expires_at FROM reservations "
        "WHERE status = 'open' AND expires_at IS NOT NULL"
    ):
        try:
            due = parse_ts(str(row["expires_at"])) <= moment
        except WireFormatError:
            continue
        if due:
            release(tx, str(row["reservation_id"]), json.loads(row["remaining"]), "expired")
            released += 1
    return released


def close_from_event(tx: Tx, type_: str, data: Mapping[str, Any], seq: int) -> None:
    """Bookkeeping an event implies (§5.3 last point): a ``count`` with a ``count_id``
    closes that count request; a ``fulfilment`` reduces (and when done closes) its
    reservation; a ``reservation.released`` or an ``order.rejected`` closes it. Used by
    resync when re-applying the store's own events, and by the agent when it records
    them."""
    if type_ == "count" and isinstance(data.get("count_id"), str):
        tx.execute(
            "UPDATE count_requests SET status = 'closed', closed_seq = ? "
            "WHERE count_id = ? AND status = 'open'",
            (seq, data["count_id"]),
        )
        return
    rid = data.get("reservation_id")
    if not isinstance(rid, str):
        return
    if type_ in ("reservation.released", "order.rejected"):
        tx.execute(
            "UPDATE reservations SET status = 'released', closed_seq = ? "
            "WHERE reservation_id = ? AND status = 'open'",
            (seq, rid),
        )
    elif type_ == "fulfilment":
        rows = tx.query(
            "SELECT remaining FROM reservations WHERE reservation_id = ? AND status = 'open'",
            (rid,),
        )
        if not rows:
            return
        remaining = {x["sku"]: x["qty"] for x in json.loads(rows[0]["remaining"])}
        for line in qty_lines(data.get("lines")) or []:
            if line["sku"] in remaining:
                remaining[line["sku"]] = max(0, remaining[line["sku"]] - line["qty"])
        done = all(q <= 0 for q in remaining.values())
        tx.execute(
            "UPDATE reservations SET remaining = ?, status = ?, closed_seq = ? "
            "WHERE reservation_id = ?",
            (
                json.dumps([{"sku": s, "qty": q} for s, q in remaining.items()]),
                "fulfilled" if done else "open",
                seq if done else None,
                rid,
            ),
        )


def pending_cancels(tx: Tx) -> Sequence[str]:
    return [
        str(r["reservation_id"])
        for r in tx.query(
            "SELECT reservation_id FROM reservations WHERE status = 'open' AND cancel_requested = 1"
        )
    ]
