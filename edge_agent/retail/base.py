"""The retail parts' shared base: store state, the idempotent write path, live notices.

Each part (:mod:`~edge_agent.retail.sales`, :mod:`~edge_agent.retail.movements`,
:mod:`~edge_agent.retail.queries`, :mod:`~edge_agent.retail.baskets`,
:mod:`~edge_agent.retail.sessions`) extends :class:`RetailBase`; each write runs as a
single ledger op: the idempotency check, the business rules, the fact, the bookkeeping
rows and the idempotency record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from edge_agent.config import ControlBarcodes, StoreSection
from edge_agent.errors import OperationError
from edge_agent.hub import EventHub
from edge_agent.ledger import AppendedEvent, Ledger, Tx
from edge_agent.retail import ops
from edge_agent.retail.idempotency import WriteResult, idempotent
from edge_agent.retail.till import TillRefused, TillRules

if TYPE_CHECKING:
    from drivers.barcode import RcnRegion


_LIVE_KEYS = ("sale_id", "return_id", "terminal", "total", "refund_total", "currency",
              "reason", "ref", "event")


def live_summary(body: dict[str, Any]) -> dict[str, Any]:
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


def event_of(appended: AppendedEvent) -> dict[str, Any]:
    return {"epoch": appended.epoch, "seq": appended.seq, "id": appended.id, "ts": appended.ts}


def append_fact(tx: Tx, fact: ops.Fact) -> dict[str, Any]:
    return event_of(tx.append(fact.type, fact.data, stock=fact.stock, reserve=fact.reserve))


class RetailBase:
    """What every retail part shares: the ledger, the store's rules, the hub, and the
    write path (idempotency, refused-item events, live notices)."""

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
            result = await self.ledger.write(idempotent(operation, body, key, run))
        except TillRefused as exc:
            await self._record_refusal(exc, body.get("terminal") if isinstance(body, Mapping)
                                       else getattr(body, "terminal", None))
            raise
        if self.hub is not None and self.hub.subscriber_count and not result.replayed:
            self.hub.publish(operation, live_summary(result.body))  # the store page, POS
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

    def _check_currency(self, currency: str, index: int | None) -> None:
        if currency != self.currency:
            where = "" if index is None else f"lines[{index}]: "
            raise OperationError("currency_mismatch", f"{where}the catalog prices this item in "
                                 f"{currency}, the store sells in {self.currency}", status=422)

    def _publish(self, topic: str, data: dict[str, Any]) -> None:
        if self.hub is not None:
            self.hub.publish(topic, data)
