"""Stock movements: receipts, adjustments, transfers, counts and reservation fulfilment."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.retail.base import RetailBase, append_fact
from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.requests import (
    AdjustmentRequest,
    CountRequest,
    FulfilmentRequest,
    ReceiptRequest,
    TransferRequest,
)
from sync.wire import new_uuid


def _remaining(text: str) -> dict[str, int]:
    return ops.sum_by_sku((str(x["sku"]), int(x["qty"])) for x in json.loads(text))


class Movements(RetailBase):
    """Writes that move stock without a sale: one fact each."""

    async def receipt(self, request: ReceiptRequest, *,
                      idempotency_key: str | None) -> WriteResult:
        fact = ops.receipt_fact([(x.sku, x.qty) for x in request.lines], request.ref)
        return await self._write("receipt", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": append_fact(tx, fact)})

    async def adjustment(self, request: AdjustmentRequest, *,
                         idempotency_key: str | None) -> WriteResult:
        fact = ops.adjustment_fact(request.reason, [(x.sku, x.qty) for x in request.lines],
                                   request.note)
        return await self._write("adjustment", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": append_fact(tx, fact)})

    async def transfer_out(self, request: TransferRequest, *,
                           idempotency_key: str | None) -> WriteResult:
        fact = ops.transfer_fact(request.to_store, request.ref,
                                 [(x.sku, x.qty) for x in request.lines])
        return await self._write("transfer", request, idempotency_key,
                                 lambda tx: {**fact.data, "event": append_fact(tx, fact)})

    def _record_count(self, tx: Tx, count_id: str,
                      counted: Sequence[tuple[str, int]]) -> dict[str, Any]:
        fact = ops.count_fact(count_id, counted, {sku: tx.on_hand(sku) for sku, _ in counted})
        event = append_fact(tx, fact)
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
            event = append_fact(tx, fact)
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
