"""The RFID engine: merchandise tag sightings in; count sessions, the floor EPC set and
``unsold_tag_exit`` alerts out.

The router calls :meth:`RfidEngine.handle` (synchronously, on the loop) for every tag
event of a UHF reader whose role is ``inventory`` or ``door``, or whose mode is ``sale``
(a till); ``handle`` only updates memory. Open counts live in memory
(:class:`~edge_agent.rfid.tally.CountSession`); closing one is one ledger transaction
(:func:`~edge_agent.rfid.transactions.close_op`). :meth:`RfidEngine.run` ticks once a
second: it saves floor sightings, judges door sightings that are ``rfid.exit_hold_s`` old
(one transaction), and applies retention hourly; its till worker adds tags read at a till
to the terminal's basket. A count open when the agent stops is aborted (its reads were in
memory).

Privacy: merchandise EPCs are not personal data, but nothing here ever sees a shopper's
pseudonym or customer id, and tags that are not SGTINs (loyalty cards) are only counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import structlog

from drivers.events import TagEvent
from edge_agent.engines import GuardedEngine, tick_forever
from edge_agent.errors import EdgeAgentError, OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import RetailService
from edge_agent.rfid import store
from edge_agent.rfid.counting import check_zones, control_action, live_view
from edge_agent.rfid.tally import CountSession
from edge_agent.rfid.transactions import DoorSighting, close_op, judge_op
from edge_agent.services import AgentServices
from edge_agent.visitors.engine import VisitorDevice
from sync.wire import new_uuid

log = structlog.get_logger("edge_agent.rfid")

ENGINE_EXTRA: Final = "rfid"
"""``services.extras[ENGINE_EXTRA]`` is the running engine (the API finds it there)."""
RETENTION_EVERY_S: Final = 3600.0
MAX_FLOOR_BUFFER: Final = 200_000
MAX_DOOR_PENDING: Final = 10_000
MAX_TILL_PENDING: Final = 1000


class RfidDevice(VisitorDevice, Protocol):
    """A device's routing (name, kind, role, zone) plus what RFID readers add."""

    @property
    def mode(self) -> str | None: ...

    @property
    def terminal(self) -> str | None: ...


class RfidEngine(GuardedEngine["RfidDevice", TagEvent]):
    ENGINE = "rfid"
    _log = log

    def __init__(self, services: AgentServices, *, retail: RetailService | None = None,
                 clock: Callable[[], float] = time.time, tick_s: float = 1.0) -> None:
        self._services = services
        self._retail = retail
        self._till: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=MAX_TILL_PENDING)
        self._ledger = services.ledger
        self._cfg = services.config.rfid
        self._clock = clock
        self._tick_s = tick_s
        devices = services.config.devices
        self.inventory = {d.name: d.zone for d in devices if d.role == "inventory"}
        self.doors = {d.name: d.zone for d in devices if d.role == "door" and d.kind == "uhf"}
        self.zones = sorted(set(self.inventory.values()))
        self._counts: dict[str, CountSession] = {}
        self._floor: dict[str, tuple[str, str, float]] = {}
        self._door: dict[str, DoorSighting] = {}
        self._last_retention = float("-inf")
        self._barcode_counts: list[str] = []
        self._lock = asyncio.Lock()
        self._figures: dict[str, int] = dict.fromkeys((
            "tag_events", "count_reads", "non_sgtin_reads", "floor_sightings", "floor_shed",
            "door_sightings", "door_shed", "exit_alerts", "exit_ignored_sold",
            "exit_ignored_returned", "exit_ignored_repeat", "exit_ignored_off_floor",
            "exit_ignored_foreign", "counts_closed", "counts_aborted",
            "retention_deleted", "handle_errors", "tick_errors", "till_tags", "till_repeats",
            "till_rejected", "till_shed",
        ), 0)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Register with the services; abort counts a previous run left open."""
        self._services.extras[ENGINE_EXTRA] = self
        now = self._clock()
        aborted = await self._ledger.write(lambda tx: tx.execute(
            "UPDATE rfid_counts SET status = 'aborted', closed_at = ? WHERE status = 'open'",
            (now,)).rowcount)
        self._figures["counts_aborted"] += aborted
        if aborted:
            log.warning("rfid: counts left open by the last run were aborted", counts=aborted)

    async def run(self) -> None:
        """The tick loop and the till worker, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticks(), name="rfid.tick")
            tg.create_task(self._till_worker(), name="rfid.till")

    async def _ticks(self) -> None:
        await tick_forever(self.tick, self._tick_s, on_error=self._tick_failed,
                           final=self.flush_floor)

    def _tick_failed(self, exc: Exception) -> None:
        self._figures["tick_errors"] += 1
        log.error("rfid: tick failed", error=str(exc))

    def figures(self) -> dict[str, Any]:
        return {**self._figures, "open_counts": len(self._counts),
                "floor_buffered": len(self._floor), "door_pending": len(self._door),
                "till_pending": self._till.qsize()}

    # -- events (sync, on the loop) -----------------------------------------------------------
    def _handle(self, device: RfidDevice, event: TagEvent) -> None:
        if not event.present or event.technology != "uhf":
            return
        figures = self._figures
        figures["tag_events"] += 1
        epc, gtin = event.tag_id, event.epc_gtin
        if device.mode == "sale" and device.role is None:
            if gtin is None:
                figures["non_sgtin_reads"] += 1
            elif self._till.full():
                figures["till_shed"] += 1
            else:
                self._till.put_nowait((device.terminal or device.name, epc))
        elif device.role == "inventory":
            zone = device.zone
            for session in self._counts.values():
                if session.covers(zone):
                    session.read(epc, gtin, zone)
                    figures["count_reads"] += 1
            if gtin is None:
                figures["non_sgtin_reads"] += 1
                return
            if epc in self._floor or len(self._floor) < MAX_FLOOR_BUFFER:
                self._floor[epc] = (gtin, zone, event.ts)
                figures["floor_sightings"] += 1
            else:
                figures["floor_shed"] += 1
        elif device.role == "door" and gtin is not None:
            if epc in self._door:
                return
            if len(self._door) >= MAX_DOOR_PENDING:
                figures["door_shed"] += 1
                return
            self._door[epc] = (gtin, event.epc_serial, device.name, device.zone, event.ts)
            figures["door_sightings"] += 1

    # -- tags read at a till ------------------------------------------------------------------
    async def _till_worker(self) -> None:
        while True:
            terminal, epc = await self._till.get()
            await self.till_tag(terminal, epc)

    async def till_tag(self, terminal: str, epc: str) -> dict[str, Any] | None:
        """Add a tag read at a till to the terminal's basket; the basket, or None when the
        tag is refused (published as ``scan_rejected``) or already in the basket."""
        figures = self._figures
        if self._retail is None:
            figures["till_rejected"] += 1
            return None
        try:
            basket = await self._retail.basket_add(terminal, epc=epc)
        except OperationError as exc:
            if exc.code == "tag_in_basket":
                figures["till_repeats"] += 1
                return None
            figures["till_rejected"] += 1
            self._services.hub.publish("scan_rejected", {
                "terminal": terminal, "mode": "sale", "reason": exc.code, "message": str(exc)})
            return None
        except EdgeAgentError as exc:
            figures["till_rejected"] += 1
            log.warning("rfid: till tag not added", terminal=terminal, error=str(exc))
            return None
        figures["till_tags"] += 1
        return basket

    # -- control barcodes ----------------------------------------------------------------------
    async def control_scan(self, device: str, code: str) -> bool:
        """A scanned RFID control barcode (``rfid.count_barcode[:ZONE]``, ``close_barcode``,
        ``cancel_barcode``): act on it and publish the outcome; False for any other code."""
        found = control_action(self._cfg, code)
        if found is None:
            return False
        hub = self._services.hub
        try:
            await self._control(*found)  # each action publishes ``rfid_count``
        except OperationError as exc:
            hub.publish("scan_rejected", {"device": device, "mode": "rfid", "reason": exc.code,
                                          "message": str(exc)})
        return True

    def _publish(self, action: str, view: dict[str, Any]) -> None:
        """``rfid_count`` on the hub: a count opened, closed or cancelled (no per-SKU lines)."""
        self._services.hub.publish("rfid_count", {"action": action, **{
            k: v for k, v in view.items() if k not in {"lines", "per_gtin", "unknown_gtins"}}})

    async def _control(self, action: str, zone: str | None) -> dict[str, Any]:
        if action == "open":
            view = await self.open_count([zone] if zone else None)
            self._barcode_counts.append(view["count_id"])
            return view
        # Counts closed or cancelled another way (API, CLI) are no longer the barcode's.
        self._barcode_counts = [c for c in self._barcode_counts if c in self._counts]
        if not self._barcode_counts:
            raise OperationError("no_barcode_count", "no open count was opened by barcode",
                                 status=409)
        count_id = self._barcode_counts[-1]
        view = await (self.close_count(count_id) if action == "close"
                      else self.cancel_count(count_id))
        self._barcode_counts.remove(count_id)
        return view

    # -- counts -------------------------------------------------------------------------------
    async def open_count(self, zones: Sequence[str] | None = None,
                         count_id: str | None = None) -> dict[str, Any]:
        wanted = check_zones(self.zones, zones)
        for other in self._counts.values():
            if wanted is None or other.zones is None or wanted & other.zones:
                raise OperationError("count_overlap", f"count {other.count_id} is already open "
                                     "on these zones; close or cancel it first", status=409)
        count_id = count_id or new_uuid()
        now = self._clock()
        zones_json = json.dumps(sorted(wanted)) if wanted is not None else None

        def op(tx: Tx) -> None:
            if tx.query("SELECT 1 FROM rfid_counts WHERE count_id = ?", (count_id,)):
                raise OperationError("count_exists", f"count {count_id} already exists")
            tx.execute("INSERT INTO rfid_counts (count_id, zones, status, opened_at) "
                       "VALUES (?, ?, 'open', ?)", (count_id, zones_json, now))

        async with self._lock:
            await self._ledger.write(op)
            self._counts[count_id] = CountSession(count_id, wanted, now, self._cfg.max_count_epcs)
        log.info("rfid count opened", count_id=count_id, zones=zones_json or "store")
        view = live_view(self._counts[count_id])
        self._publish("open", view)
        return view

    async def count_view(self, count_id: str) -> dict[str, Any]:
        session = self._counts.get(count_id)
        if session is not None:
            return live_view(session)
        rows = await self._ledger.read(lambda conn: conn.execute(
            "SELECT * FROM rfid_counts WHERE count_id = ?", (count_id,)).fetchall())
        if not rows:
            raise OperationError("count_not_found", f"no RFID count {count_id}", status=404)
        return store.count_row(rows[0])

    async def list_counts(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._ledger.read(lambda conn: conn.execute(
            "SELECT * FROM rfid_counts ORDER BY opened_at DESC LIMIT ?", (limit,)).fetchall())
        out = []
        for row in rows:
            session = self._counts.get(str(row["count_id"]))
            out.append(live_view(session) if session is not None else store.count_row(row))
        return out

    async def cancel_count(self, count_id: str) -> dict[str, Any]:
        async with self._lock:
            session = self._counts.get(count_id)
            if session is None:
                await self._settled(count_id)
            now = self._clock()
            await self._ledger.write(lambda tx: tx.execute(
                "UPDATE rfid_counts SET status = 'cancelled', closed_at = ? "
                "WHERE count_id = ? AND status = 'open'", (now, count_id)))
            self._counts.pop(count_id, None)
        view = await self.count_view(count_id)
        self._publish("cancel", view)
        return view

    async def _settled(self, count_id: str) -> dict[str, Any]:
        """A count that is not open: its stored view, or 404."""
        view = await self.count_view(count_id)
        raise OperationError("count_not_open", f"count {count_id} is {view['status']}",
                             status=409)

    async def close_count(self, count_id: str) -> dict[str, Any]:
        """Close at this moment (the cut-off) and record the count facts. Closing a count
        that is already closed answers its recorded result (a retried close is safe)."""
        async with self._lock:
            session = self._counts.get(count_id)
            if session is None:
                view = await self.count_view(count_id)
                if view["status"] == "closed":
                    result: dict[str, Any] = view["result"]
                    return result
                raise OperationError("count_not_open", f"count {count_id} is {view['status']}",
                                     status=409)
            if session.overflow:
                raise OperationError(
                    "count_overflow", f"count {count_id} saw more than {session.max_epcs} "
                    "distinct tags (rfid.max_count_epcs); its result would be short. Cancel "
                    "it and count smaller zones, or raise the limit", status=409)
            del self._counts[count_id]  # no read reaches it from now on
            try:
                now = self._clock()
                body = await self._ledger.write(lambda tx: close_op(tx, session, now))
            except BaseException:
                self._counts[count_id] = session
                raise
        self._figures["counts_closed"] += 1
        self._publish("close", body)
        log.info("rfid count closed", count_id=count_id, tags=body["tags"],
                 skus=len(body["lines"]), sold_excluded=body["sold_excluded"])
        return body

    # -- periodic work ------------------------------------------------------------------------
    async def tick(self) -> None:
        await self.flush_floor()
        await self.judge_exits()
        if self._clock() - self._last_retention >= RETENTION_EVERY_S:
            await self.apply_retention()

    async def apply_retention(self) -> int:
        """Forget old and excess floor/sold EPCs and exit-alert memory (hourly)."""
        now = self._last_retention = self._clock()
        cfg = self._cfg
        deleted = await self._ledger.write(lambda tx: store.apply_retention(
            tx, cutoff=now - cfg.retention_days * 86400.0,
            alert_cutoff=now - max(cfg.exit_grace_min * 60.0, 60.0),
            max_floor=cfg.max_floor_epcs, max_sold=cfg.max_sold_epcs))
        self._figures["retention_deleted"] += deleted
        return deleted

    async def flush_floor(self) -> None:
        """Save buffered floor sightings (EPC -> last zone) in one transaction."""
        if not self._floor:
            return
        batch, self._floor = self._floor, {}

        def op(tx: Tx) -> None:
            sku_of = store.skus_for_gtins(tx.query, {gtin for gtin, _, _ in batch.values()})
            store.save_floor(tx, [(epc, gtin, sku_of.get(gtin), zone, ts)
                                  for epc, (gtin, zone, ts) in batch.items()])

        try:
            await self._ledger.write(op)
        except BaseException:
            for epc, row in batch.items():  # keep them for the next tick
                self._floor.setdefault(epc, row)
            raise

    async def judge_exits(self) -> list[dict[str, Any]]:
        """Door sightings at least ``exit_hold_s`` old: an alert for each unsold tag."""
        now = self._clock()
        hold = self._cfg.exit_hold_s
        due = {epc: row for epc, row in self._door.items() if now - row[4] >= hold}
        if not due:
            return []
        grace_s = self._cfg.exit_grace_min * 60.0

        off_floor = self._cfg.exit_alert_off_floor
        alerts, ignored = await self._ledger.write(
            lambda tx: judge_op(tx, due, now, grace_s, off_floor=off_floor))
        for epc in due:
            self._door.pop(epc, None)
        figures = self._figures
        figures["exit_alerts"] += len(alerts)
        figures["exit_ignored_sold"] += ignored.get("sold", 0)
        figures["exit_ignored_returned"] += ignored.get("returned_recently", 0)
        figures["exit_ignored_repeat"] += ignored.get("alerted_recently", 0)
        figures["exit_ignored_off_floor"] += ignored.get("off_floor", 0)
        figures["exit_ignored_foreign"] += ignored.get("foreign", 0)
        for alert in alerts:
            self._services.hub.publish("alert", alert)
            log.warning("rfid: unsold tag left the store", door=alert["door"], sku=alert["sku"])
        return alerts

    async def accuracy(self, sku: str | None = None) -> list[dict[str, Any]]:
        return await self._ledger.read(lambda conn: store.accuracy_rows(conn, sku))
