"""A scanner in ``pick`` mode: a clerk picks online orders with the scanner alone.

- Scanning an order slip (``controls.order_prefix`` + the order id, e.g. ``ORD:W1001``)
  makes that order the terminal's current one; an incoming order is accepted by it (the
  clerk took the slip), with the terminal as ``by``.
- Without a slip scanned, the store's only order being picked (accepted or picking) is
  the current one; with several, the scan is refused (``pick_no_order``).
- Every other scan is one picking scan of the current order, with the quantity control
  (``CTL-QTY-n``) applying to the next one; the close or checkout control marks the
  order ready, the cancel control forgets the current order (nothing is undone).

The current order per terminal lives in memory: after a restart the picked units are
still in the ledger, and the clerk scans the slip again (or the only open pick is taken).
"""

from __future__ import annotations

import sqlite3

from edge_agent.config import ControlBarcodes
from edge_agent.errors import OperationError
from edge_agent.orders.service import OrderService


class PickTerminals:
    def __init__(self, orders: OrderService, controls: ControlBarcodes) -> None:
        self.orders = orders
        self.controls = controls
        self._current: dict[str, str] = {}
        self._pending_qty: dict[str, int] = {}

    async def handle(self, terminal: str, code: str) -> None:
        """One scan of a pick terminal; OperationError when refused (the caller reports)."""
        controls = self.controls
        if code.startswith(controls.order_prefix):
            await self._select(terminal, code[len(controls.order_prefix):])
        elif code.startswith(controls.quantity_prefix):
            text = code[len(controls.quantity_prefix):]
            if not text.isdigit() or not 0 < int(text) <= 9999:
                raise OperationError("invalid_quantity",
                                     "a quantity control barcode needs 1..9999", status=422)
            self._pending_qty[terminal] = int(text)
        elif code == controls.cancel:
            self._current.pop(terminal, None)
            self._pending_qty.pop(terminal, None)
        elif code in (controls.close_session, controls.checkout):
            await self.orders.ready(await self._order(terminal), idempotency_key=None)
            self._current.pop(terminal, None)
        elif code == controls.void_line:
            raise OperationError("not_supported", "a picked unit is not voided by scan; "
                                 "reject the order or finish the pick", status=409)
        else:
            order_id = await self._order(terminal)
            qty = self._pending_qty.pop(terminal, None)
            await self.orders.pick(order_id, code, qty=qty, idempotency_key=None)

    async def _select(self, terminal: str, order_id: str) -> None:
        order = await self.orders.order(order_id)
        if order["status"] == "incoming":
            await self.orders.accept(order_id, by=terminal, idempotency_key=None)
        elif order["status"] not in ("accepted", "picking"):
            raise OperationError("order_wrong_state",
                                 f"order {order_id} is {order['status']}; nothing to pick")
        self._current[terminal] = order_id
        self._pending_qty.pop(terminal, None)

    async def _order(self, terminal: str) -> str:
        current = self._current.get(terminal)
        if current is not None:
            return current

        def picking(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute(
                "SELECT DISTINCT order_id FROM orders WHERE status IN ('accepted', 'picking') "
                "LIMIT 2")]
        found = await self.orders.ledger.read(picking)
        if len(found) != 1:
            raise OperationError(
                "pick_no_order",
                "scan the order's slip first" + ("" if not found else
                                                 ": several orders are being picked"))
        return found[0]
