"""Sales and returns: pricing the lines, the ``sale`` and ``return`` facts and their rows."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.retail.base import RetailBase, append_fact
from edge_agent.retail.catalog import CatalogView, QueryFn, scan_code
from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.money import parse_money
from edge_agent.retail.requests import (
    ReturnRequest,
    SaleRequest,
)
from edge_agent.retail.tagged import check_return_tags, serialise_lines, tag_item
from edge_agent.retail.till import TillRefused
from edge_agent.rfid import store as rfid_store
from edge_agent.rfid.serials import parse_epc
from sync.wire import canonical_json, loads, new_uuid


def time_ordered_id() -> str:
    """A UUIDv7 (RFC 9562): Unix milliseconds first, then random bits. Sale ids sort by
    time, so the ``sales`` B-tree grows at its right edge: a group of sales dirties a page
    or two instead of one random page each (fewer WAL frames to sync per commit)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64 \
        | 0b10 << 62 | (rand & 0x3FFFFFFFFFFFFFFF)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _sale_lines(query: QueryFn, sale_id: str) -> list[dict[str, Any]]:
    rows = query("SELECT lines FROM sales WHERE sale_id = ?", (sale_id,))
    if not rows:
        raise OperationError("sale_not_found", f"no sale {sale_id} in this store", status=404)
    lines: list[dict[str, Any]] = loads(rows[0]["lines"])
    return lines


class Sales(RetailBase):
    """Sell and take back: priced lines in, one fact out."""

    # -- sale ---------------------------------------------------------------------------------
    def _price_lines(self, view: CatalogView, request: SaleRequest) -> list[ops.PricedLine]:
        priced = self._price_keyed_lines(view, request)
        if any(line.epc is not None for line in request.lines):
            priced = serialise_lines(view, request.lines, priced)
        return priced

    def _price_keyed_lines(self, view: CatalogView,
                           request: SaleRequest) -> list[ops.PricedLine]:
        priced: list[ops.PricedLine] = []
        for index, line in enumerate(request.lines):
            given = parse_money(line.unit_price) if line.unit_price is not None else None
            if line.sku is None and line.gtin is None and line.barcode is None:
                tag, tagged = tag_item(view, line.epc or "", f"lines[{index}]")
                self._check_currency(tagged.currency, index)
                priced.append(ops.PricedLine(tagged.sku, 1,
                                             tagged.price if given is None else given,
                                             gtin=tag.gtin))
                continue
            if line.sku is not None:
                item = view.item(line.sku)
                if item is None and given is None:
                    raise OperationError("unknown_sku", f"lines[{index}]: {line.sku} is not in "
                                         "the catalog (give unit_price to sell it anyway)",
                                         status=422)
                if item is not None:
                    self._check_currency(item.currency, index)
                    price = given if given is not None else item.price
                else:
                    price = given or Decimal(0)
                priced.append(ops.PricedLine(line.sku, line.qty or 1, price))
                continue
            if line.gtin is not None:
                sku = view.sku_for_gtin(line.gtin.zfill(14))
                item = view.item(sku) if sku is not None else None
                if item is None:
                    raise OperationError("unknown_sku", f"lines[{index}]: no catalog item for "
                                         f"GTIN {line.gtin}", status=422)
                self._check_currency(item.currency, index)
                priced.append(ops.PricedLine(item.sku, line.qty or 1,
                                             given if given is not None else item.price,
                                             gtin=line.gtin.zfill(14)))
                continue
            assert line.barcode is not None  # noqa: S101 - the model requires one key
            try:
                scanned = scan_code(view, line.barcode, self.rules, "sale")
            except TillRefused as exc:
                raise exc.prefixed(f"lines[{index}]") from None
            except OperationError as exc:
                raise OperationError(exc.code, f"lines[{index}]: {exc}", status=exc.status) \
                    from None
            self._check_currency(scanned.item.currency, index)
            priced.append(ops.PricedLine(
                scanned.item.sku, line.qty or scanned.qty or 1,
                given if given is not None else scanned.item.price, gtin=scanned.gtin,
                line_total=scanned.line_total if line.qty is None else None,
            ))
        return priced

    def _record_sale(
        self, tx: Tx, sale_id: str, terminal: str, lines: Sequence[ops.PricedLine], *,
        payments: Sequence[tuple[str, Decimal]], customer: str | None,
        check_exists: bool = True,
    ) -> dict[str, Any]:
        fact = ops.sale_fact(sale_id, terminal, lines, payments, currency=self.currency,
                             customer=customer)
        if check_exists and tx.query("SELECT 1 FROM sales WHERE sale_id = ?", (sale_id,)):
            raise OperationError("sale_exists", f"sale {sale_id} is already recorded")
        sold = ops.sum_by_sku((line.sku, line.qty) for line in lines)
        # One read of the stock rows before the fact (tx.query first flushes the group's
        # buffered deltas, so this is the store's on-hand now); after = before - sold.
        marks = ",".join("?" * len(sold))
        before = {str(r[0]): int(r[1]) for r in tx.query(
            f"SELECT sku, on_hand FROM stock WHERE sku IN ({marks})", tuple(sold))}
        event = append_fact(tx, fact)
        data = fact.data
        tagged = [(x.epc, x.gtin or "", x.sku) for x in lines if x.epc is not None]
        if tagged:
            rfid_store.record_sold(tx, tagged, sale_id, time.time())
        tx.execute(
            "INSERT INTO sales (sale_id, epoch, seq, ts, terminal, total, currency, customer, "
            "lines) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sale_id, event["epoch"], event["seq"], event["ts"], terminal, data["total"],
             self.currency, customer, canonical_json(data["lines"]).decode()),
        )
        alerts = []
        alert = ops.oversold_fact(sale_id, {sku: before.get(sku, 0) - qty
                                            for sku, qty in sold.items()})
        if alert is not None:
            alerts.append({**alert.data, "event": append_fact(tx, alert)})
        return {**data, "event": event, "alerts": alerts}

    async def sale(self, request: SaleRequest, *, idempotency_key: str | None) -> WriteResult:
        currency = request.currency or self.currency
        if currency != self.currency:
            raise OperationError("currency_mismatch", f"this store sells in {self.currency}, "
                                 f"not {currency}", status=422)
        payments = [(p.method, parse_money(p.amount)) for p in request.payments]

        def run(tx: Tx) -> dict[str, Any]:
            # The id is drawn here, on the writer thread: os.urandom releases the GIL, and
            # the event loop thread would then queue behind the writer to get it back.
            sale_id = request.sale_id or time_ordered_id()
            view = CatalogView(tx.query)
            view.prefetch([line.sku for line in request.lines if line.sku is not None])
            lines = self._price_lines(view, request)
            return self._record_sale(tx, sale_id, request.terminal, lines, payments=payments,
                                     customer=request.customer,
                                     check_exists=request.sale_id is not None)

        return await self._write("sale", request, idempotency_key, run)

    # -- return -------------------------------------------------------------------------------
    async def return_goods(self, request: ReturnRequest, *,
                           idempotency_key: str | None) -> WriteResult:
        return_id = request.return_id or new_uuid()
        lines = [ops.ReturnLine(x.sku, x.qty, x.restock,
                                parse_money(x.unit_price) if x.unit_price is not None else None)
                 for x in request.lines]
        tags = {i: parse_epc(x.epc, f"lines[{i}]") for i, x in enumerate(request.lines)
                if x.epc is not None}
        if tags:
            lines = [ops.ReturnLine(x.sku, x.qty, x.restock, x.unit_price, tags[i].epc,
                                    tags[i].serial) if i in tags else x
                     for i, x in enumerate(lines)]

        def run(tx: Tx) -> dict[str, Any]:
            if tx.query("SELECT 1 FROM returns WHERE return_id = ?", (return_id,)):
                raise OperationError("return_exists", f"return {return_id} is already recorded")
            sold: list[ops.SoldLine] | None = None
            returned: dict[str, int] = {}
            prices: dict[str, Decimal] = {}
            if request.sale_id is not None:
                sold = [ops.SoldLine(x["sku"], int(x["qty"]), Decimal(x["line_total"]))
                        for x in _sale_lines(tx.query, request.sale_id)]
                returned = {r["sku"]: int(r["q"]) for r in tx.query(
                    "SELECT sku, sum(qty) AS q FROM return_lines WHERE sale_id = ? GROUP BY sku",
                    (request.sale_id,))}
            else:
                view = CatalogView(tx.query)
                for line in lines:
                    item = view.item(line.sku)
                    if item is not None:
                        prices[line.sku] = item.price
            fact = ops.return_fact(
                return_id, lines, restock=request.restock, currency=self.currency,
                sale_id=request.sale_id, sold=sold, returned=returned, catalog_prices=prices,
                allow_without_receipt=self.store.returns_without_receipt,
                customer=request.customer,
            )
            if tags:
                check_return_tags(CatalogView(tx.query), lines, tags)
            event = append_fact(tx, fact)
            if tags:
                rfid_store.record_returned(
                    tx, [(t.epc, t.gtin, lines[i].sku) for i, t in tags.items()], return_id,
                    time.time())
            tx.execute(
                "INSERT INTO returns (return_id, sale_id, epoch, seq, ts, refund_total) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (return_id, request.sale_id, event["epoch"], event["seq"], event["ts"],
                 fact.data["refund_total"]),
            )
            tx.executemany(
                "INSERT INTO return_lines (return_id, line_no, sale_id, sku, qty, restock) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(return_id, n, request.sale_id, x["sku"], x["qty"], int(x["restock"]))
                 for n, x in enumerate(fact.data["lines"], start=1)],
            )
            return {**fact.data, "event": event}

        return await self._write("return", request, idempotency_key, run)
