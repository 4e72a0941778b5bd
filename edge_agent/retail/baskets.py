"""Baskets of scan-only sale terminals (and the API): add, quantity, void, cancel, checkout."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.retail.catalog import CatalogView, QueryFn, conn_query, scan_code
from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.money import format_money, format_price, parse_money
from edge_agent.retail.requests import (
    CheckoutRequest,
)
from edge_agent.retail.sales import Sales
from edge_agent.retail.tagged import tag_item
from edge_agent.rfid import till as rfid_till
from sync.wire import new_uuid, now_ts


class Baskets(Sales):
    """One open basket per terminal, turned into one ``sale`` fact at checkout."""

    @staticmethod
    def _basket_view(tx_query: QueryFn, terminal: str, currency: str) -> dict[str, Any] | None:
        rows = tx_query("SELECT basket_id, opened_at, pending_qty, customer FROM baskets "
                        "WHERE terminal = ?", (terminal,))
        if not rows:
            return None
        head = rows[0]
        lines = []
        total = Decimal(0)
        for r in tx_query("SELECT line_no, sku, gtin, qty, unit_price, line_total FROM "
                          "basket_lines WHERE basket_id = ? ORDER BY line_no",
                          (head["basket_id"],)):
            line = ops.PricedLine(r["sku"], int(r["qty"]), Decimal(r["unit_price"]), r["gtin"],
                                  Decimal(r["line_total"]) if r["line_total"] else None)
            amount = ops.line_total(line, currency)
            total += amount
            lines.append({"line_no": int(r["line_no"]), "sku": line.sku, "gtin": line.gtin,
                          "qty": line.qty, "unit_price": r["unit_price"],
                          "line_total": format_money(amount, currency)})
        return {"terminal": terminal, "basket_id": head["basket_id"],
                "opened_at": head["opened_at"], "pending_qty": head["pending_qty"],
                "customer": head["customer"], "lines": lines,
                "total": format_money(total, currency), "currency": currency}

    def _basket_head(self, tx: Tx, terminal: str) -> sqlite3.Row:
        rows = tx.query("SELECT * FROM baskets WHERE terminal = ?", (terminal,))
        if rows:
            return rows[0]
        ts = now_ts()
        tx.execute("INSERT INTO baskets (terminal, basket_id, opened_at, updated_at) "
                   "VALUES (?, ?, ?, ?)", (terminal, new_uuid(), ts, ts))
        return tx.query("SELECT * FROM baskets WHERE terminal = ?", (terminal,))[0]

    async def basket(self, terminal: str) -> dict[str, Any] | None:
        return await self.ledger.read(
            lambda conn: self._basket_view(conn_query(conn), terminal, self.currency))

    async def basket_add(self, terminal: str, *, code: str | None = None, sku: str | None = None,
                         qty: int | None = None, epc: str | None = None) -> dict[str, Any]:
        """Add a scanned code or a SKU; a pending quantity (control barcode) applies once.
        ``epc``: a tag read at the till (one item, known by its serial; edge_agent.rfid)."""
        notices: list[dict[str, Any]] = []

        def run(tx: Tx) -> dict[str, Any]:
            notices.clear()
            view = CatalogView(tx.query)
            tag = None
            fixed_qty: int | None
            gtin: str | None
            if epc is not None:
                tag, item = tag_item(view, epc, "epc")
                gtin, fixed_qty, fixed_total = tag.gtin, 1, None
            elif code is not None:
                scanned = scan_code(view, code, self.rules, "sale")
                notices.extend(scanned.notices)
                item, gtin = scanned.item, scanned.gtin
                fixed_qty, fixed_total = scanned.qty, scanned.line_total
            else:
                found = view.item(sku or "")
                if found is None:
                    raise OperationError("unknown_sku", f"{sku} is not in the catalog",
                                         status=422)
                item, gtin, fixed_qty, fixed_total = found, None, None, None
            self._check_currency(item.currency, None)
            head = self._basket_head(tx, terminal)
            if tag is not None:
                rfid_till.add_tag(tx, head["basket_id"], head["next_line"], tag.epc)
            pending = head["pending_qty"]
            take = 1 if tag is not None else qty or fixed_qty or 1
            if pending and fixed_total is None and fixed_qty is None:
                take *= int(pending)
            tx.execute(
                "INSERT INTO basket_lines (basket_id, line_no, sku, gtin, qty, unit_price, "
                "line_total) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (head["basket_id"], head["next_line"], item.sku, gtin, take,
                 format_price(item.price),
                 format_money(fixed_total, self.currency) if fixed_total is not None else None),
            )
            tx.execute("UPDATE baskets SET next_line = next_line + 1, pending_qty = NULL, "
                       "updated_at = ? WHERE terminal = ?", (now_ts(), terminal))
            view_out = self._basket_view(tx.query, terminal, self.currency)
            assert view_out is not None  # noqa: S101 - created above
            return view_out

        basket = await self._scan_write(run, terminal)
        if notices:
            basket = {**basket, "notices": notices}
        self._publish("basket", {"action": "add", **basket})
        return basket

    async def basket_pending_qty(self, terminal: str, qty: int) -> dict[str, Any]:
        if not 0 < qty <= 9999:
            raise OperationError("invalid_quantity", "a quantity control must be 1..9999",
                                 status=422)

        def run(tx: Tx) -> dict[str, Any]:
            self._basket_head(tx, terminal)
            tx.execute("UPDATE baskets SET pending_qty = ?, updated_at = ? WHERE terminal = ?",
                       (qty, now_ts(), terminal))
            out = self._basket_view(tx.query, terminal, self.currency)
            assert out is not None  # noqa: S101 - created above
            return out

        basket = await self.ledger.write(run)
        self._publish("basket", {"action": "quantity", **basket})
        return basket

    async def basket_void(self, terminal: str, line_no: int | None = None) -> dict[str, Any]:
        """Remove a line (the last one when ``line_no`` is None)."""
        def run(tx: Tx) -> dict[str, Any]:
            rows = tx.query("SELECT basket_id FROM baskets WHERE terminal = ?", (terminal,))
            if not rows:
                raise OperationError("basket_empty", f"terminal {terminal} has no open basket",
                                     status=404)
            basket_id = rows[0]["basket_id"]
            if line_no is None:
                last = tx.query("SELECT max(line_no) AS n FROM basket_lines WHERE basket_id = ?",
                                (basket_id,))[0]["n"]
                target = last
            else:
                target = line_no
            deleted = tx.execute("DELETE FROM basket_lines WHERE basket_id = ? AND line_no = ?",
                                 (basket_id, target)).rowcount if target is not None else 0
            if not deleted:
                raise OperationError("basket_line_not_found", "no such line in the basket",
                                     status=404)
            out = self._basket_view(tx.query, terminal, self.currency)
            assert out is not None  # noqa: S101 - the head row exists
            return out

        basket = await self.ledger.write(run)
        self._publish("basket", {"action": "void", **basket})
        return basket

    async def basket_cancel(self, terminal: str) -> bool:
        def run(tx: Tx) -> bool:
            rows = tx.query("SELECT basket_id FROM baskets WHERE terminal = ?", (terminal,))
            if not rows:
                return False
            tx.execute("DELETE FROM basket_lines WHERE basket_id = ?", (rows[0]["basket_id"],))
            tx.execute("DELETE FROM baskets WHERE terminal = ?", (terminal,))
            return True

        cancelled = await self.ledger.write(run)
        if cancelled:
            self._publish("basket", {"action": "cancel", "terminal": terminal, "lines": []})
        return cancelled

    async def basket_checkout(self, terminal: str, request: CheckoutRequest | None = None, *,
                              idempotency_key: str | None = None) -> WriteResult:
        """Turn the terminal's basket into one ``sale`` fact and close it, in one transaction.
        Without payments, the total is paid with the configured default method."""
        request = request or CheckoutRequest()

        def run(tx: Tx) -> dict[str, Any]:
            basket = self._basket_view(tx.query, terminal, self.currency)
            if basket is None or not basket["lines"]:
                raise OperationError("basket_empty", f"terminal {terminal} has nothing to sell",
                                     status=409)
            lines = [ops.PricedLine(x["sku"], x["qty"], Decimal(x["unit_price"]), x["gtin"],
                                    Decimal(x["line_total"])) for x in basket["lines"]]
            lines = rfid_till.tagged_lines(tx, basket["basket_id"], basket["lines"], lines)
            if request.payments is None:
                payments = [(self.controls.default_payment, Decimal(basket["total"]))]
            else:
                payments = [(p.method, parse_money(p.amount)) for p in request.payments]
            result = self._record_sale(tx, basket["basket_id"], terminal, lines,
                                       payments=payments,
                                       customer=request.customer or basket["customer"])
            tx.execute("DELETE FROM basket_lines WHERE basket_id = ?", (basket["basket_id"],))
            tx.execute("DELETE FROM baskets WHERE terminal = ?", (terminal,))
            return result

        body = {"terminal": terminal, "request": request.model_dump(mode="json")}
        result = await self._write("checkout", body, idempotency_key, run)
        self._publish("basket", {"action": "checkout", "terminal": terminal,
                                 "sale_id": result.body["sale_id"],
                                 "total": result.body["total"], "lines": []})
        return result
