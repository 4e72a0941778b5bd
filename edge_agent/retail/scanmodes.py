"""Scan-only terminals: a scanner configured with a mode and a terminal works without POS
software.

- ``sale``: scans build the terminal's basket; control barcodes set a quantity for the
  next item, void the last line, cancel the basket, or check out (one ``sale`` fact paid
  with the configured default method).
- ``receive``: each scan is +1 into the terminal's open receiving session; the close
  control barcode (or the API) turns it into one ``receipt`` fact.
- ``count``: the same for a count session, closed into one ``count`` fact.
- ``lookup``: price and stock only; nothing is written.
- ``pick``: online orders picked by scan (:mod:`edge_agent.orders.scanning`).

Baskets and sessions live in the ledger database (not as events), so a restart loses
nothing. Results go to POS screens on the hub (topics ``scan``, ``basket``, ``session``,
``lookup``); bad input is published as ``scan_rejected`` with a reason and counted,
never raised.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from drivers.events import ScanEvent
from edge_agent.config import HidScannerDevice, SerialScannerDevice
from edge_agent.errors import EdgeAgentError, OperationError
from edge_agent.orders.scanning import PickTerminals
from edge_agent.orders.service import OrderService
from edge_agent.retail.requests import looks_like_card_data
from edge_agent.retail.service import RetailService
from edge_agent.retail.sessions import SessionKind
from edge_agent.services import AgentServices

log = structlog.get_logger("edge_agent.scanmodes")

MAX_CODE_CHARS = 512  # a GS1 DataMatrix or Digital Link may be long; the reader caps it
GS = "\x1d"


def _is_aim(symbology: str | None) -> bool:
    return symbology is not None and len(symbology) == 3 and symbology.startswith("]")


class ScanModes:
    """Routes scans of scan-only terminals to retail operations."""

    def __init__(self, services: AgentServices, retail: RetailService | None = None) -> None:
        self.services = services
        self.retail = retail or RetailService(
            services.ledger, services.config.store, controls=services.config.controls,
            hub=services.hub,
        )
        self.controls = services.config.controls
        # A quantity control in receive/count mode applies to the next scan only; it is
        # kept in memory (a lost pending quantity after a restart costs one re-scan).
        self._pending_qty: dict[tuple[str, str], int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pick: PickTerminals | None = None

    def _picking(self) -> PickTerminals:
        if self._pick is None:
            orders = OrderService(self.services.ledger, self.services.config.store,
                                  hub=self.services.hub)
            self._pick = PickTerminals(orders, self.controls)
        return self._pick

    def _lock(self, terminal: str) -> asyncio.Lock:
        lock = self._locks.get(terminal)
        if lock is None:
            lock = self._locks[terminal] = asyncio.Lock()
        return lock

    async def handle_scan(self, device: SerialScannerDevice | HidScannerDevice,
                          event: ScanEvent) -> None:
        """Act on one scan. Never raises (except cancellation)."""
        mode = device.mode or "lookup"
        terminal = device.terminal or device.name
        code = event.code.strip() if isinstance(event.code, str) else ""
        context = {"device": device.name, "terminal": terminal, "mode": mode}
        self.services.count("scan_mode.scans")
        # GS (FNC1) separates GS1 fields; any other control character is garbage.
        if not code or len(code) > MAX_CODE_CHARS or not code.replace(GS, "").isprintable():
            self._reject(context, "invalid_code", "the scanned code is empty, too long or "
                         "has control characters", code=None)
            return
        if looks_like_card_data(code):
            self._reject(context, "card_data_rejected", "card data is never processed",
                         code=None)
            return
        self.services.hub.publish("scan", {**context, "code": code,
                                           "symbology": event.symbology, "ts": event.ts})
        # The item is read with its AIM id, as the API reads a code typed with one (a GS1
        # symbology id tells an element string from a plain number).
        item_code = (event.symbology or "") + code if _is_aim(event.symbology) else code
        try:
            async with self._lock(terminal):
                if mode == "sale":
                    await self._sale(terminal, code, item_code)
                elif mode in ("receive", "count"):
                    await self._session(mode, terminal, code, item_code)
                elif mode == "pick":  # online orders, edge_agent.orders.scanning
                    await self._picking().handle(terminal, code)
                else:
                    result = await self.retail.lookup(item_code)
                    self.services.hub.publish("lookup", {**context, **result})
        except OperationError as exc:
            self._reject(context, exc.code, str(exc), code=code)
        except EdgeAgentError as exc:
            log.warning("scan_mode.failed", error=str(exc), **context)
            self._reject(context, "ledger_unavailable", str(exc), code=code)
        except Exception:
            log.exception("scan_mode.crashed", **context)
            self._reject(context, "internal_error", "the scan could not be processed",
                         code=code)

    def _reject(self, context: dict[str, Any], reason: str, message: str, *,
                code: str | None) -> None:
        self.services.count("scan_rejected")
        self.services.count(f"scan_rejected.{reason}")
        payload = {**context, "reason": reason, "message": message}
        if code is not None:
            payload["code"] = code
        self.services.hub.publish("scan_rejected", payload)

    async def _sale(self, terminal: str, code: str, item_code: str) -> None:
        controls = self.controls
        if code == controls.checkout:
            await self.retail.basket_checkout(terminal, idempotency_key=None)
        elif code == controls.cancel:
            if not await self.retail.basket_cancel(terminal):
                raise OperationError("basket_empty", "there is no basket to cancel", status=409)
        elif code == controls.void_line:
            await self.retail.basket_void(terminal)
        elif code.startswith(controls.quantity_prefix):
            await self.retail.basket_pending_qty(terminal, self._quantity(code))
        elif code == controls.close_session:
            raise OperationError("not_in_session", "a sale terminal has no session to close",
                                 status=409)
        else:
            await self.retail.basket_add(terminal, code=item_code)

    def _quantity(self, code: str) -> int:
        text = code[len(self.controls.quantity_prefix):]
        if not text.isdigit() or not 0 < int(text) <= 9999:
            raise OperationError("invalid_quantity", "a quantity control barcode needs 1..9999",
                                 status=422)
        return int(text)

    async def _session(self, kind: str, terminal: str, code: str, item_code: str) -> None:
        controls = self.controls
        session_kind: SessionKind = "receive" if kind == "receive" else "count"
        if code in (controls.close_session, controls.checkout):
            session_id = await self.retail.open_session_id(session_kind, terminal)
            if session_id is None:
                raise OperationError("session_not_found", "no open session to close",
                                     status=409)
            self._pending_qty.pop((terminal, kind), None)
            await self.retail.session_close(session_id)
        elif code == controls.cancel:
            session_id = await self.retail.open_session_id(session_kind, terminal)
            if session_id is None:
                raise OperationError("session_not_found", "no open session to cancel",
                                     status=409)
            await self.retail.session_cancel(session_id)
        elif code.startswith(controls.quantity_prefix):
            self._pending_qty[(terminal, kind)] = self._quantity(code)
        elif code == controls.void_line:
            raise OperationError("not_supported", "void applies to sale baskets only",
                                 status=409)
        else:
            qty = self._pending_qty.pop((terminal, kind), 1)
            await self.retail.session_add(session_kind, terminal, code=item_code, qty=qty)
