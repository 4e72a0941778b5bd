"""How the order engine follows a store's order events (``order.accepted`` … ``fulfilment``,
``order.rejected``, ``reservation.released``) and its counts: assignment states, history,
rejection holds, RFID counts. A part of :class:`central.orders.OmniEngine` (a mixin, so
that each module keeps one job and a readable size).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from central.hooks import Tx
from central.omni_state import OmniState
from central.orders_db import add_history
from central.storage import Connection
from sync.wire import SKU_RE

STAGES = {"assigned": 0, "accepted": 1, "picked": 2, "packed": 3, "ready": 4, "fulfilled": 5}
_STEP_EVENTS = {"order.accepted": "accepted", "order.picked": "picked",
                "order.packed": "packed", "order.ready": "ready"}


class StoreEvents:
    """The engine's store-event handlers; the engine supplies the attributes below."""

    state: OmniState
    _skus: set[str]
    _deadlines: dict[str, tuple[float, str, str]]

    def _db(self) -> Connection:
        raise NotImplementedError

    def _broker(self, tx: Tx, order_id: str, now: float, ts: str) -> None:
        raise NotImplementedError

    def _update_state(self, order_id: str, ts: str, *, queued: bool = False) -> None:
        raise NotImplementedError

    def _on_store_event(self, tx: Tx, store: str, kind: str, data: dict[str, Any], *,
                        now: float, ts: str) -> None:
        conn = self._db()
        if kind == "count":
            self._on_count(store, data, now)
            return
        rid = data.get("reservation_id")
        if not isinstance(rid, str):
            return
        rows = conn.execute("SELECT order_id, store, state, lines FROM omni_assignments "
                            "WHERE reservation_id = ?", (rid,))
        if not rows or rows[0][1] != store:
            return  # not an order central brokered (a plain reservation), or a stray
        order_id, _, state, lines = rows[0]
        detail: dict[str, Any] = {"reservation_id": rid}
        new = state
        if kind in _STEP_EVENTS:
            step = _STEP_EVENTS[kind]
            if state in STAGES and STAGES[state] < STAGES[step]:
                new = step
            if kind == "order.accepted" and isinstance(data.get("by"), str):
                detail["by"] = data["by"]
        elif kind == "fulfilment":
            # handed over, even after central gave up on the store (it was offline when
            # the cancel was sent): the history says so, it is not lost
            if state in STAGES or state in ("timeout", "cancelling"):
                new = "fulfilled"
                if state not in STAGES:
                    detail["after"] = state
                detail["how"] = data.get("how") if data.get("how") in (
                    "collected", "shipped") else None
                if isinstance(data.get("tracking"), str):
                    detail["tracking"] = data["tracking"]
        elif kind in ("order.rejected", "reservation.released"):
            if state in ("timeout", "cancelling"):
                new = "released"
            elif state in STAGES and state != "fulfilled":
                new = "rejected" if kind == "order.rejected" else "released"
                detail["reason"] = data.get("reason")
            if kind == "order.rejected" and new != state:
                # whatever central thought of the order by then, the store says it could
                # not send these units: it promises them no more until it counts them
                self._hold(store, orjson.loads(lines), data.get("lines"))
        if new == state:
            return
        self._deadlines.pop(rid, None)
        conn.execute("UPDATE omni_assignments SET state = ? WHERE reservation_id = ?",
                     (new, rid))
        event = str(detail.get("how") or "fulfilled") if new == "fulfilled" else new
        add_history(conn, order_id, ts, event=event, store=store,
                    detail=detail)
        if new in ("rejected", "released") and state not in ("timeout", "cancelling"):
            self._broker(tx, order_id, now, ts)
        else:
            self._update_state(order_id, ts)

    def _hold(self, store: str, assigned: list[dict[str, Any]], released: Any) -> None:
        """Lower the store's ATP of what it rejected until its next count of the SKU."""
        lines = released if isinstance(released, list) and released else assigned
        conn = self._db()
        for line in lines:
            sku, qty = (line.get("sku"), line.get("qty")) if isinstance(line, dict) else (0, 0)
            if not isinstance(sku, str) or type(qty) is not int or qty <= 0:
                continue
            with self.state.lock:
                self.state.holds[(store, sku)] = self.state.holds.get((store, sku), 0) + qty
                total = self.state.holds[(store, sku)]
            conn.execute("INSERT INTO omni_holds (store, sku, qty) VALUES (?, ?, ?) ON CONFLICT "
                         "(store, sku) DO UPDATE SET qty = excluded.qty", (store, sku, total))
            self._skus.add(sku)

    def _on_count(self, store: str, data: dict[str, Any], now: float) -> None:
        lines = data.get("lines")
        if not isinstance(lines, list):
            return
        rfid = data.get("source") == "rfid"
        counted_at = now
        if rfid and isinstance(data.get("counted_at"), str):
            try:
                counted_at = min(now, datetime.fromisoformat(data["counted_at"]).timestamp())
            except ValueError:
                counted_at = now
        conn = self._db()
        for line in lines:
            sku = line.get("sku") if isinstance(line, dict) else None
            if not isinstance(sku, str) or SKU_RE.fullmatch(sku) is None:
                continue
            with self.state.lock:
                self.state.holds.pop((store, sku), None)
                if rfid:
                    self.state.rfid[(store, sku)] = counted_at
                else:
                    self.state.rfid.pop((store, sku), None)
            conn.execute("DELETE FROM omni_holds WHERE store = ? AND sku = ?", (store, sku))
            conn.execute("INSERT INTO omni_counts (store, sku, counted_at, source) VALUES "
                         "(?, ?, ?, ?) ON CONFLICT (store, sku) DO UPDATE SET counted_at = "
                         "excluded.counted_at, source = excluded.source",
                         (store, sku, counted_at, "rfid" if rfid else "manual"))
            self._skus.add(sku)
