"""Retail operations on the ledger: one write op per operation, one fact per write.

Each write runs as a single ledger op (one SQLite transaction, shared by group commit):
the idempotency check, the business rules (:mod:`edge_agent.retail.ops`), the fact with
its stock/reserve deltas, the bookkeeping rows and the idempotency record all commit
together or not at all. Reads go through ``ledger.read`` (a consistent snapshot).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel

from edge_agent.config import ControlBarcodes, StoreSection
from edge_agent.errors import OperationError
from edge_agent.hub import EventHub
from edge_agent.ledger import AppendedEvent, Ledger, Tx
from edge_agent.retail import ops
from edge_agent.retail.catalog import CatalogView, QueryFn, ScannedItem, conn_query, scan_code
from edge_agent.retail.money import format_money, format_price, parse_money
from edge_agent.retail.requests import (
    AdjustmentRequest,
    CheckoutRequest,
    CountRequest,
    FulfilmentRequest,
    ReceiptRequest,
    ReturnRequest,
    SaleRequest,
    TransferRequest,
)
from edge_agent.retail.tagged import check_return_tags, serialise_lines, tag_item
from edge_agent.retail.till import TillRefused, TillRules
from edge_agent.rfid import store as rfid_store
from edge_agent.rfid import till as rfid_till
from edge_agent.rfid.serials import parse_epc
from sync.wire import canonical_json, loads, new_uuid, now_ts, sha256_hex

if TYPE_CHECKING:
    from drivers.barcode import RcnRegion

log = structlog.get_logger("edge_agent.retail")

SessionKind = Literal["receive", "count"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write returns: its result body, and whether it is a replay of an earlier
    write with the same idempotency key and body."""

    body: dict[str, Any]
    replayed: bool = False


_LIVE_KEYS = ("sale_id", "return_id", "terminal", "total", "refund_total", "currency",
              "reason", "ref", "event")


def _live_summary(body: dict[str, Any]) -> dict[str, Any]:
    """What a committed write tells live listeners (``/v1/events/stream``): ids, totals,
    units and alert kinds; never payments or the customer."""
    out = {key: body[key] for key in _LIVE_KEYS if key in body}
    lines = body.get("lines")
    if isinstance(lines, list):
        out["units"] = sum(int(line.get("qty", 0)) for line in lines if isinstance(line, dict))
    alerts = body.get("alerts")
    if isinstance(alerts, list) and alerts:
        out["alerts"] = [a.get("kind") for a in alerts if isinstance(a, dict)]
    return out


def _event(appended: AppendedEvent) -> dict[str, Any]:
    return {"epoch": appended.epoch, "seq": appended.seq, "id": appended.id, "ts": appended.ts}


def _append(tx: Tx, fact: ops.Fact) -> dict[str, Any]:
    return _event(tx.append(fact.type, fact.data, stock=fact.stock, reserve=fact.reserve))




def _remaining(text: str) -> dict[str, int]:
    return ops.sum_by_sku((str(x["sku"]), int(x["qty"])) for x in json.loads(text))


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


def _reservation_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "reservation_id": row["reservation_id"], "order_ref": row["order_ref"],
        "lines": json.loads(row["lines"]), "remaining": json.loads(row["remaining"]),
        "expires_at": row["expires_at"], "status": row["status"],
        "cancel_requested": bool(row["cancel_requested"]), "closed_seq": row["closed_seq"],
    }


class RetailService:
    """Sales, returns, stock movements, baskets and sessions of one store."""

    def __init__(
        self,
        ledger: Ledger,
        store: StoreSection,
        *,
        controls: ControlBarcodes | None = None,
        hub: EventHub | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.currency = store.currency
        self.controls = controls or ControlBarcodes()
        self.hub = hub
        self.rules = TillRules.from_store(store)
        self.region: RcnRegion | str | None = self.rules.region

    # -- idempotency --------------------------------------------------------------------------
    def _idempotent(
        self,
        operation: str,
        body: BaseModel | Mapping[str, Any],
        key: str | None,
        run: Callable[[Tx], dict[str, Any]],
    ) -> Callable[[Tx], WriteResult]:
        plain = body.model_dump(mode="json") if isinstance(body, BaseModel) else dict(body)
        digest = sha256_hex(canonical_json({"operation": operation, "body": plain}))

        def op(tx: Tx) -> WriteResult:
            if key is not None:
                rows = tx.query(
                    "SELECT operation, body_sha256, result FROM idempotency_keys WHERE key = ?",
                    (key,),
                )
                if rows:
                    if rows[0]["body_sha256"] != digest:
                        raise OperationError(
                            "idempotency_conflict",
                            f"the idempotency key was already used for another "
                            f"{rows[0]['operation']} request; use a new key for a new request",
                        )
                    return WriteResult(loads(rows[0]["result"]), replayed=True)
            result = run(tx)
            if key is not None:
                tx.execute(
                    "INSERT INTO idempotency_keys (key, operation, body_sha256, result, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (key, operation, digest, canonical_json(result), now_ts()),
                )
            return WriteResult(result)

        return op

    async def prune_idempotency_keys(self, older_than_ts: str) -> int:
        """Forget idempotency keys recorded before ``older_than_ts`` (RFC 3339): a client
        retry after that is a new write. Run daily by the daemon's maintenance (keep at least
        a day so a POS retrying after an outage still gets its original answer)."""
        return await self.ledger.write(lambda tx: tx.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?", (older_than_ts,)).rowcount)

    async def _write(
        self, operation: str, body: BaseModel | Mapping[str, Any], key: str | None,
        run: Callable[[Tx], dict[str, Any]],
    ) -> WriteResult:
        try:
            result = await self.ledger.write(self._idempotent(operation, body, key, run))
        except TillRefused as exc:
            await self._record_refusal(exc, body.get("terminal") if isinstance(body, Mapping)
                                       else getattr(body, "terminal", None))
            raise
        if self.hub is not None and self.hub.subscriber_count and not result.replayed:
            self.hub.publish(operation, _live_summary(result.body))  # the store page, POS
        return result

    async def _record_refusal(self, exc: TillRefused, terminal: str | None) -> None:
        """Record the event of a refused item (the refused write itself rolled back)."""
        type_, data = exc.event
        if terminal:
            data = {**data, "terminal": terminal}
        await self.ledger.write(lambda tx: tx.append(type_, data))
        self._publish("till_refused", {"code": exc.code, "message": str(exc), **data})

    async def _scan_write(self, run: Callable[[Tx], dict[str, Any]],
                          terminal: str) -> dict[str, Any]:
        try:
            return await self.ledger.write(run)
        except TillRefused as exc:
            await self._record_refusal(exc, terminal)
            raise

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

    def _check_currency(self, currency: str, index: int | None) -> None:
        if currency != self.currency:
            where = "" if index is None else f"lines[{index}]: "
            raise OperationError("currency_mismatch", f"{where}the catalog prices this item in "
                                 f"{currency}, the store sells in {self.currency}", status=422)

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
        event = _append(tx, fact)
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
            alerts.append({**alert.data, "event": _append(tx, alert)})
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
            event = _append(tx, fact)
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

    # -- stock movements ----------------------------------------------------------------------
    async def receipt(self, request: ReceiptRequest, *,
                      idempotency_key: str | None) -> WriteResult:
        fact = ops.receipt_fact([(x.sku, x.qty) for x in request.lines], request.ref)
        return await self._write("receipt", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": _append(tx, fact)})

    async def adjustment(self, request: AdjustmentRequest, *,
                         idempotency_key: str | None) -> WriteResult:
        fact = ops.adjustment_fact(request.reason, [(x.sku, x.qty) for x in request.lines],
                                   request.note)
        return await self._write("adjustment", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": _append(tx, fact)})

    async def transfer_out(self, request: TransferRequest, *,
                           idempotency_key: str | None) -> WriteResult:
        fact = ops.transfer_fact(request.to_store, request.ref,
                                 [(x.sku, x.qty) for x in request.lines])
        return await self._write("transfer", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": _append(tx, fact)})

    def _record_count(self, tx: Tx, count_id: str,
                      counted: Sequence[tuple[str, int]]) -> dict[str, Any]:
        fact = ops.count_fact(count_id, counted, {sku: tx.on_hand(sku) for sku, _ in counted})
        event = _append(tx, fact)
        closed = tx.execute(
            "UPDATE count_requests SET status = 'closed', closed_seq = ? "
            "WHERE count_id = ? AND status = 'open'",
            (event["seq"], count_id),
        ).rowcount
        return {**fact.data, "event": event, "closed_request": closed > 0}

    async def count(self, request: CountRequest, *, idempotency_key: str | None) -> WriteResult:
        count_id = request.count_id or new_uuid()
        counted = [(x.sku, x.counted) for x in request.lines]
        return await self._write("count", request, idempotency_key,
                                 lambda tx: self._record_count(tx, count_id, counted))

    async def fulfil(self, request: FulfilmentRequest, *,
                     idempotency_key: str | None) -> WriteResult:
        def run(tx: Tx) -> dict[str, Any]:
            rows = tx.query(
                "SELECT reservation_id, order_ref, status, remaining FROM reservations "
                "WHERE reservation_id = ?", (request.reservation_id,),
            )
            reservation = None
            if rows:
                row = rows[0]
                reservation = ops.Reservation(row["reservation_id"], row["order_ref"],
                                              row["status"], _remaining(row["remaining"]))
            if rows and tx.query("SELECT 1 FROM orders WHERE reservation_id = ?",
                                 (request.reservation_id,)):
                raise OperationError("reservation_is_order", "this reservation is an online "
                                     "order's: hand it over with /v1/orders/{order_id}/collect "
                                     "or /ship")
            lines = None if request.lines is None else [(x.sku, x.qty) for x in request.lines]
            fact, remaining = ops.fulfilment_fact(reservation, lines)
            event = _append(tx, fact)
            done = all(qty <= 0 for qty in remaining.values())
            tx.execute(
                "UPDATE reservations SET remaining = ?, status = ?, closed_seq = ? "
                "WHERE reservation_id = ?",
                (json.dumps([{"sku": s, "qty": q} for s, q in remaining.items()]),
                 "fulfilled" if done else "open", event["seq"] if done else None,
                 request.reservation_id),
            )
            return {**fact.data, "event": event,
                    "remaining": [{"sku": s, "qty": q} for s, q in remaining.items()],
                    "status": "fulfilled" if done else "open"}

        return await self._write("fulfilment", request, idempotency_key, run)

    # -- reads --------------------------------------------------------------------------------
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

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
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

        return await self.ledger.read(read)

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

    # -- baskets (scan-only sale terminals and the API) ---------------------------------------
    def _publish(self, topic: str, data: dict[str, Any]) -> None:
        if self.hub is not None:
            self.hub.publish(topic, data)

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

    # -- receiving and count sessions ---------------------------------------------------------
    @staticmethod
    def _session_view(query: QueryFn, session_id: str) -> dict[str, Any] | None:
        rows = query("SELECT * FROM stock_sessions WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        row = rows[0]
        lines = [{"sku": r["sku"], "qty": int(r["qty"])} for r in query(
            "SELECT sku, qty FROM stock_session_lines WHERE session_id = ? ORDER BY sku",
            (session_id,))]
        return {"session_id": session_id, "kind": row["kind"], "terminal": row["terminal"],
                "status": row["status"], "ref": row["ref"], "count_id": row["count_id"],
                "opened_at": row["opened_at"], "closed_at": row["closed_at"],
                "closed_seq": row["closed_seq"], "lines": lines}

    def _open_session(self, tx: Tx, kind: SessionKind, terminal: str, ref: str | None = None,
                      count_id: str | None = None) -> str:
        rows = tx.query("SELECT session_id FROM stock_sessions WHERE terminal = ? AND kind = ? "
                        "AND status = 'open'", (terminal, kind))
        if rows:
            return str(rows[0]["session_id"])
        session_id = new_uuid()
        tx.execute("INSERT INTO stock_sessions (session_id, kind, terminal, status, ref, "
                   "count_id, opened_at) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                   (session_id, kind, terminal, ref, count_id, now_ts()))
        return session_id

    async def session_open(self, kind: SessionKind, terminal: str, *, ref: str | None = None,
                           count_id: str | None = None) -> dict[str, Any]:
        """Open (or return the already open) session of this kind on this terminal."""
        def run(tx: Tx) -> dict[str, Any]:
            session_id = self._open_session(tx, kind, terminal, ref, count_id)
            out = self._session_view(tx.query, session_id)
            assert out is not None  # noqa: S101 - just opened
            return out

        session = await self.ledger.write(run)
        self._publish("session", {"action": "open", **session})
        return session

    async def session_add(self, kind: SessionKind, terminal: str, *, code: str | None = None,
                          sku: str | None = None, qty: int = 1,
                          session_id: str | None = None) -> dict[str, Any]:
        """Count ``qty`` more of an item into the terminal's open session (opened on demand)."""
        def run(tx: Tx) -> dict[str, Any]:
            view = CatalogView(tx.query)
            if code is not None:
                item_sku = scan_code(view, code, self.rules, kind).item.sku
            elif sku is not None and view.item(sku) is not None:
                item_sku = sku
            else:
                raise OperationError("unknown_sku", f"{sku} is not in the catalog", status=422)
            if session_id is not None:
                rows = tx.query("SELECT status FROM stock_sessions WHERE session_id = ?",
                                (session_id,))
                if not rows:
                    raise OperationError("session_not_found", "no such session", status=404)
                if rows[0]["status"] != "open":
                    raise OperationError("session_closed", "the session is closed")
                sid = session_id
            else:
                sid = self._open_session(tx, kind, terminal)
            tx.execute("INSERT INTO stock_session_lines (session_id, sku, qty) VALUES (?, ?, ?) "
                       "ON CONFLICT (session_id, sku) DO UPDATE SET qty = qty + excluded.qty",
                       (sid, item_sku, qty))
            out = self._session_view(tx.query, sid)
            assert out is not None  # noqa: S101 - exists
            return {**out, "last": {"sku": item_sku, "qty": qty}}

        session = await self._scan_write(run, terminal)
        self._publish("session", {"action": "add", **session})
        return session

    async def open_session_id(self, kind: SessionKind, terminal: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT session_id FROM stock_sessions WHERE terminal = ? AND "
                               "kind = ? AND status = 'open'", (terminal, kind)).fetchone()
            return None if row is None else str(row[0])

        return await self.ledger.read(read)

    async def session(self, session_id: str) -> dict[str, Any]:
        found = await self.ledger.read(
            lambda conn: self._session_view(conn_query(conn), session_id))
        if found is None:
            raise OperationError("session_not_found", "no such session", status=404)
        return found

    async def sessions(self, status: str | None = "open") -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            query = conn_query(conn)
            ids = [r[0] for r in conn.execute(
                "SELECT session_id FROM stock_sessions WHERE ? IS NULL OR status = ? "
                "ORDER BY opened_at", (status, status))]
            return [v for v in (self._session_view(query, i) for i in ids) if v is not None]

        return await self.ledger.read(read)

    async def session_close(self, session_id: str, *,
                            idempotency_key: str | None = None) -> WriteResult:
        """Close a session: a receiving session becomes one ``receipt`` fact, a count session
        one ``count`` fact (expected = on-hand now). An empty session closes with no fact."""
        def run(tx: Tx) -> dict[str, Any]:
            session = self._session_view(tx.query, session_id)
            if session is None:
                raise OperationError("session_not_found", "no such session", status=404)
            if session["status"] != "open":
                raise OperationError("session_closed", f"the session is {session['status']}")
            lines = [(x["sku"], x["qty"]) for x in session["lines"]]
            result: dict[str, Any]
            if not lines:
                result = {"event": None}
            elif session["kind"] == "receive":
                fact = ops.receipt_fact(lines, session["ref"])
                result = {**fact.data, "event": _append(tx, fact)}
            else:
                result = self._record_count(tx, session["count_id"] or session_id, lines)
            event = result["event"]
            tx.execute("UPDATE stock_sessions SET status = ?, closed_at = ?, closed_seq = ? "
                       "WHERE session_id = ?",
                       ("closed" if event else "cancelled", now_ts(),
                        event["seq"] if event else None, session_id))
            return {"session_id": session_id, "kind": session["kind"],
                    "terminal": session["terminal"], **result}

        result = await self._write("session.close", {"session_id": session_id},
                                   idempotency_key, run)
        self._publish("session", {"action": "close", **result.body})
        return result

    async def session_cancel(self, session_id: str) -> dict[str, Any]:
        def run(tx: Tx) -> dict[str, Any]:
            changed = tx.execute("UPDATE stock_sessions SET status = 'cancelled', closed_at = ? "
                                 "WHERE session_id = ? AND status = 'open'",
                                 (now_ts(), session_id)).rowcount
            out = self._session_view(tx.query, session_id)
            if out is None:
                raise OperationError("session_not_found", "no such session", status=404)
            if not changed:
                raise OperationError("session_closed", f"the session is {out['status']}")
            return out

        session = await self.ledger.write(run)
        self._publish("session", {"action": "cancel", **session})
        return session


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
