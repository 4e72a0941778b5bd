"""The fulfilment queue's operations for the API (and a scanner in pick mode): each is one
ledger write op (one transaction) with an idempotency key, like the retail writes; reads
go through a consistent read snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from edge_agent.config import StoreSection
from edge_agent.errors import OperationError
from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger, Tx
from edge_agent.orders import machine, store
from edge_agent.retail.catalog import CatalogView, conn_query, scan_code
from edge_agent.retail.idempotency import WriteResult, idempotent
from edge_agent.retail.till import TillRules

log = structlog.get_logger("edge_agent.orders")


class OrderService:
    """The store's queue of online orders: list, accept, reject, pick, pack, ready, hand
    over (collect or ship)."""

    def __init__(self, ledger: Ledger, store_section: StoreSection, *,
                 hub: EventHub | None = None) -> None:
        self.ledger = ledger
        self.hub = hub
        # the store's layouts and region, as the till reads codes; biip loads on the first
        # code read, not at start (edge_agent.retail.till.TillRules keeps a region code)
        self.region: TillRules = TillRules.from_store(store_section)

    # -- reads ------------------------------------------------------------------------------
    async def orders(self, status: str | None = store.OPEN,
                     limit: int = 200) -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return store.read_orders(conn_query(conn), status, limit)
        return await self.ledger.read(read)

    async def order(self, order_id: str) -> dict[str, Any]:
        return await self.ledger.read(lambda conn: store.read_order(conn_query(conn), order_id))

    # -- steps ------------------------------------------------------------------------------
    async def _step(self, operation: str, order_id: str, body: Mapping[str, Any],
                    key: str | None, run: Callable[[Tx], dict[str, Any]]) -> WriteResult:
        result = await self.ledger.write(
            idempotent(f"order.{operation}", {"order_id": order_id, **body}, key, run))
        if self.hub is not None and not result.replayed:
            self.hub.publish("order", {"action": operation, "order_id": order_id,
                                       "status": result.body.get("status")})
        log.info("orders.step", step=operation, order_id=order_id,
                 status=result.body.get("status"), replayed=result.replayed)
        return result

    async def accept(self, order_id: str, *, by: str | None = None,
                     idempotency_key: str | None) -> WriteResult:
        return await self._step("accept", order_id, {"by": by}, idempotency_key,
                                lambda tx: store.step(tx, order_id,
                                                      lambda o: machine.accept(o, by)))

    async def reject(self, order_id: str, reason: str, *, note: str | None = None,
                     idempotency_key: str | None) -> WriteResult:
        if reason not in machine.REJECT_REASONS:
            raise OperationError("invalid_reason",
                                 f"reason must be one of {list(machine.REJECT_REASONS)}",
                                 status=422)
        run = store.reject_step(reason)
        return await self._step("reject", order_id, {"reason": reason, "note": note},
                                idempotency_key, lambda tx: run(tx, order_id))

    async def pick(self, order_id: str, code: str, *, qty: int | None = None,
                   idempotency_key: str | None) -> WriteResult:
        """One picking scan: ``code`` is read like a till scan (GTIN, GS1 with serial,
        variable-measure, SKU or alias) and must be an item the order still needs."""
        def run(tx: Tx) -> dict[str, Any]:
            scanned = scan_code(CatalogView(tx.query), code, self.region)
            take = qty or scanned.qty or 1
            out = store.step(tx, order_id, lambda o: machine.pick(
                o, scanned.item.sku, take, gtin=scanned.gtin, serial=scanned.info.serial))
            return {**out, "scanned": {"sku": scanned.item.sku, "qty": take,
                                       "gtin": scanned.gtin}}

        return await self._step("pick", order_id, {"code": code, "qty": qty},
                                idempotency_key, run)

    async def pack(self, order_id: str, *, parcels: int | None = None,
                   idempotency_key: str | None) -> WriteResult:
        return await self._step("pack", order_id, {"parcels": parcels}, idempotency_key,
                                lambda tx: store.step(tx, order_id,
                                                      lambda o: machine.pack(o, parcels),
                                                      parcels=parcels))

    async def ready(self, order_id: str, *, idempotency_key: str | None) -> WriteResult:
        return await self._step("ready", order_id, {}, idempotency_key,
                                lambda tx: store.step(tx, order_id, machine.ready))

    async def collect(self, order_id: str, *, code: str | None,
                      idempotency_key: str | None) -> WriteResult:
        # The idempotency record keeps a digest of the body, never the code itself.
        return await self._step("collect", order_id, {"code": code}, idempotency_key,
                                lambda tx: store.step(tx, order_id,
                                                      lambda o: machine.collect(o, code)))

    async def ship(self, order_id: str, *, tracking: str | None,
                   idempotency_key: str | None) -> WriteResult:
        return await self._step("ship", order_id, {"tracking": tracking}, idempotency_key,
                                lambda tx: store.step(tx, order_id,
                                                      lambda o: machine.ship(o, tracking),
                                                      tracking=tracking))
