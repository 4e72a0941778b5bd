"""The visitors engine: device events in, ``visit`` and ``footfall`` facts out.

The lead's router calls :meth:`VisitorsEngine.handle` (synchronously, on the loop) for
every tag, beacon and door event of a device with a ``role``; ``handle`` only updates
memory. :meth:`VisitorsEngine.run` ticks once a second and does every ledger write, in one
transaction per tick: closed visits (fact + report row + open state removed), open-visit
state for restarts, footfall counters and finished periods, key rotation, retention.

Privacy: raw tag/beacon ids reach :meth:`handle` and stay in the sessioniser's memory for
``visitors.presence_dedup_s`` at most; they are never written, logged or published.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from drivers.events import BeaconEvent, DoorEvent, TagEvent
from edge_agent.customers.cache import tag_index
from edge_agent.engines import GuardedEngine, tick_forever
from edge_agent.errors import EdgeAgentError
from edge_agent.ledger import Tx
from edge_agent.services import AgentServices
from edge_agent.visitors import store
from edge_agent.visitors.footfall import FootfallCounter, OpeningHours, period_start
from edge_agent.visitors.pseudonym import new_key, normalise_raw_id
from edge_agent.visitors.sessions import ClosedVisit, Sessioniser
from edge_agent.visitors.shred import KeyShredder
from sync.customer_ids import keyed_hash

log = structlog.get_logger("edge_agent.visitors")

PERSIST_EVERY_S: Final = 15.0
"""An open visit's ``last_seen`` is saved for restarts when it moved this much."""
RETENTION_EVERY_S: Final = 3600.0
LOYALTY_CHECK_EVERY_S: Final = 10.0
MAX_PENDING_VISITS: Final = 100_000
ENGINE_EXTRA: Final = "visitors"
"""``services.extras[ENGINE_EXTRA]`` is the running engine (the API reads its figures)."""


class VisitorDevice(Protocol):
    """What the engine needs of a device's configuration (``edge_agent.config.Routing``)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def role(self) -> str | None: ...

    @property
    def zone(self) -> str: ...


def disk_free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def is_door(device: VisitorDevice) -> bool:
    return device.role == "door" or (device.role is None and device.kind == "door_counter")


class VisitorsEngine(GuardedEngine["VisitorDevice", "TagEvent | BeaconEvent | DoorEvent"]):
    ENGINE = "visitors"
    _log = log

    def __init__(
        self,
        services: AgentServices,
        *,
        clock: Callable[[], float] = time.time,
        disk_free: Callable[[Path], int] = disk_free_bytes,
        tick_s: float = 1.0,
    ) -> None:
        self._services = services
        self._ledger = services.ledger
        config = services.config
        self._cfg = config.visitors
        self._clock = clock
        self._disk_free = disk_free
        self._tick_s = tick_s
        self._db_dir = Path(config.database.path).parent
        self._min_free = config.database.min_free_bytes
        self._period_s = int(self._cfg.footfall_period_s)
        self._hours = OpeningHours(config.store.opening_hours, config.store.timezone)
        self._doors = {d.name: d.zone for d in config.devices if is_door(d)}
        self._sessions: Sessioniser | None = None
        self._key_id = 0
        self._key_created = 0.0
        self._key = b""
        self._shredder = KeyShredder(Path(self._ledger.path), clock)
        self._counter = FootfallCounter(self._period_s)
        self._pending: list[ClosedVisit] = []
        self._loyalty: dict[bytes, str] = {}
        self._loyalty_keys: list[bytes] = []
        self._loyalty_version = ""
        self._loyalty_checked = 0.0
        self._fill_from = 0
        self._last_retention = float("-inf")
        self._shedding = False
        self._lock = asyncio.Lock()
        self._started_disabled = False
        self._figures: dict[str, int] = dict.fromkeys((
            "presence_reads", "presence_shed", "presence_ignored", "product_tags_ignored",
            "door_entries", "door_exits", "visits_opened", "visits_recorded",
            "visits_dropped", "customers_arrived", "footfall_periods", "key_rotations",
            "retention_deleted", "write_errors", "handle_errors", "tick_errors", "not_started",
        ), 0)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the key and the open visits; close those past the gap; remember settings."""
        now = self._clock()
        cfg = self._cfg
        config = self._services.config
        self._services.extras[ENGINE_EXTRA] = self
        if not cfg.enabled:
            await self._disable(now)
            return
        candidate = new_key()

        def op(tx: Tx) -> tuple[store.KeyRow, list[Any], int]:
            key = store.load_or_create_key(tx, candidate, now)
            restored = store.load_open_visits(tx)
            stale = [v for v in restored if now - v.last_seen >= cfg.absence_gap_s]
            closed = store.record_closed_visits(tx, [v.record(v.last_seen) for v in stale])
            store.save_report_settings(tx, config.store.timezone, self._period_s,
                                       config.store.opening_hours)
            return key, [v for v in restored if v not in stale], closed

        key, fresh, closed = await self._ledger.write(op)
        sessions = Sessioniser(key.key, gap_s=cfg.absence_gap_s, dedup_s=cfg.presence_dedup_s)
        sessions.restore(fresh)
        self._sessions = sessions
        self._key_id, self._key_created, self._key = key.id, key.created_at, key.key
        self._fill_from = period_start(now, self._period_s)
        self._figures["visits_recorded"] += closed
        await self._load_loyalty()
        self._loyalty_checked = now
        log.info("visitors engine started", restored_visits=len(fresh), closed_at_restart=closed,
                 doors=len(self._doors), enabled=cfg.enabled)

    async def _disable(self, now: float) -> None:
        """``visitors.enabled = false``: delete the key and the open-visit state (so no
        pseudonym can be linked any more), keep only retention of what was recorded. The
        key counts as destroyed once the shredder proved its bytes left every file."""
        cutoff = now - self._cfg.retention_days * 86400.0

        def op(tx: Tx) -> tuple[int, list[bytes]]:
            keys = [bytes(row[0]) for row in tx.query("SELECT key FROM visitor_keys")]
            store.destroy_keys(tx)
            tx.execute("DELETE FROM visit_open")
            return store.apply_retention(tx, cutoff), keys

        deleted, keys = await self._ledger.write(op)
        self._last_retention = now
        if not self._started_disabled:
            log.info("visitors disabled: key and open visits deleted",
                     retention_deleted=deleted, keys=len(keys))
            self._shredder.add(keys)  # at start too: an earlier run may have left bytes
        self._started_disabled = True
        self._figures["retention_deleted"] += deleted
        await self._shredder.step()

    async def run(self) -> None:
        """Tick until cancelled; on the way out save open visits and counters."""
        if self._sessions is None and not self._started_disabled:
            await self.start()
        await tick_forever(self.tick, self._tick_s, on_error=self._tick_failed,
                           final=lambda: self.flush(final=True))

    def _tick_failed(self, exc: Exception) -> None:
        self._figures["tick_errors"] += 1
        log.error("visitors: tick failed", error=type(exc).__name__)

    # -- events (sync, on the loop) ---------------------------------------------------------------
    def _handle(self, device: VisitorDevice, event: TagEvent | BeaconEvent | DoorEvent) -> None:
        if not self._cfg.enabled:
            return
        figures = self._figures
        if isinstance(event, DoorEvent):
            if not is_door(device) or event.count <= 0:
                figures["presence_ignored"] += 1
                return
            self._counter.add(device.name, event.direction, event.count, self._clock())
            figures["door_entries" if event.direction == "in" else "door_exits"] += event.count
            return
        if device.role != "presence":
            figures["presence_ignored"] += 1
            return
        if isinstance(event, TagEvent):
            if event.epc_gtin is not None:  # an SGTIN: merchandise, not a shopper
                figures["product_tags_ignored"] += 1
                return
            raw, source = event.tag_id, str(event.technology)
        else:
            raw, source = event.beacon_id, "ble"
        sessions = self._sessions
        if sessions is None:
            figures["not_started"] += 1
            return
        if event.present and self._shedding:
            figures["presence_shed"] += 1
            return
        figures["presence_reads"] += 1
        now = self._clock()
        opened = sessions.read(raw, device=device.name, source=source, zone=device.zone,
                               present=event.present, now=now)
        if opened is None:
            return
        figures["visits_opened"] += 1
        if self._loyalty:
            customer = self._registered(raw)
            if customer is not None:
                opened.customer = customer
                figures["customers_arrived"] += 1
                self._services.hub.publish("customer_arrived", {
                    "customer": customer, "zone": device.zone, "device": device.name,
                    "visit_id": opened.visit_id, "ts": store.iso(now),
                })

    # -- periodic work ----------------------------------------------------------------------------
    async def tick(self) -> None:
        """One round: disk check, visits past the gap, then one ledger transaction."""
        now = self._clock()
        if self._started_disabled:
            if now - self._last_retention >= RETENTION_EVERY_S:
                await self._disable(now)
            await self._shredder.step()
            return
        self._check_disk()
        if self._sessions is not None:
            self._pending.extend(self._sessions.tick(now))
        if now - self._loyalty_checked >= LOYALTY_CHECK_EVERY_S:
            self._loyalty_checked = now
            await self._refresh_loyalty()
        await self.flush()
        await self._shredder.step()

    def _check_disk(self) -> None:
        try:
            free = self._disk_free(self._db_dir)
        except OSError:
            return
        shedding = free < self._min_free
        if shedding != self._shedding:
            self._shedding = shedding
            log.warning("visitors: presence processing shed" if shedding else
                        "visitors: presence processing resumed", free_bytes=free,
                        min_free_bytes=self._min_free)

    async def _load_loyalty(self) -> None:
        version = await self._ledger.read(store.loyalty_version)
        self._loyalty_keys, self._loyalty = await self._ledger.read(tag_index)
        self._loyalty_version = version

    def _registered(self, raw: str) -> str | None:
        """The customer whose registered tag this is: the read's keyed hash under each
        held pepper (sync.customer_ids), in memory only."""
        tag = normalise_raw_id(raw).decode()
        for key in self._loyalty_keys:
            customer = self._loyalty.get(keyed_hash(key, "tag", tag))
            if customer is not None:
                return customer
        return None

    async def _refresh_loyalty(self) -> None:
        try:
            version = await self._ledger.read(store.loyalty_version)
            if version != self._loyalty_version:
                await self._load_loyalty()
        except (EdgeAgentError, sqlite3.Error) as exc:
            log.warning("visitors: loyalty catalog not refreshed", error=str(exc))

    async def flush(self, *, final: bool = False) -> None:
        """Write everything due in one transaction; on failure keep it for the next try."""
        sessions = self._sessions
        if sessions is None:
            return
        async with self._lock:
            now = self._clock()
            cfg = self._cfg
            if final:
                self._pending.extend(sessions.tick(now))
            sessions.refresh_present(now)  # present shoppers were seen until now
            closed, self._pending = self._pending, []
            deltas = self._counter.drain()
            key_id = self._key_id
            dirty = [v for v in sessions.open_visits
                     if final or v.persisted_seen is None
                     or v.last_seen - v.persisted_seen >= PERSIST_EVERY_S]
            rows = [store.open_row(v, key_id) for v in dirty]
            fresh_key = new_key() if now - self._key_created >= cfg.key_rotation_s else None
            retention = now - self._last_retention >= RETENTION_EVERY_S
            cutoff = now - cfg.retention_days * 86400.0
            period_s, doors, hours, fill_from = (self._period_s, self._doors, self._hours,
                                                 self._fill_from)

            def op(tx: Tx) -> tuple[int, int, int, store.KeyRow | None]:
                recorded = store.record_closed_visits(tx, closed)
                store.persist_open(tx, rows)
                store.add_footfall(tx, deltas, period_s)
                periods = store.emit_footfall(tx, doors, now, period_s=period_s, hours=hours,
                                             fill_from=fill_from)
                deleted = store.apply_retention(tx, cutoff) if retention else 0
                key = store.rotate_key(tx, fresh_key, now) if fresh_key is not None else None
                return recorded, periods, deleted, key

            try:
                recorded, periods, deleted, key = await self._ledger.write(op)
            except Exception as exc:  # noqa: BLE001 - kept for the next tick, never lost here
                self._figures["write_errors"] += 1
                log.warning("visitors: write failed, will retry",
                            error=str(exc) if isinstance(exc, EdgeAgentError)
                            else type(exc).__name__)
                merged = closed + self._pending
                overflow = max(0, len(merged) - MAX_PENDING_VISITS)
                self._pending = merged[overflow:]  # dropped ones stay in visit_open: a
                self._figures["visits_dropped"] += overflow  # restart records them
                self._counter.restore(deltas)
                return
            for visit, row in zip(dirty, rows, strict=True):
                visit.persisted_seen = row[6]
            figures = self._figures
            figures["visits_recorded"] += recorded
            figures["footfall_periods"] += periods
            figures["retention_deleted"] += deleted
            if retention:
                self._last_retention = now
            if key is not None and fresh_key is not None:
                sessions.rotate(fresh_key, now, grace_s=cfg.absence_gap_s)
                old = self._key
                self._key_id, self._key_created, self._key = key.id, key.created_at, key.key
                figures["key_rotations"] += 1
                log.info("visitors: pseudonym key rotated; the old key row is deleted")
                self._shredder.add([old])
        # outside the lock: the shredder's checkpoint must not hold up the next flush
        if self._shredder.pending:
            await self._shredder.step()

    # -- figures ----------------------------------------------------------------------------------
    @property
    def shedding(self) -> bool:
        return self._shedding

    def figures(self) -> dict[str, Any]:
        """Counters and gauges for health (``presence_shed`` counts shed presence reads)."""
        sessions = self._sessions
        out: dict[str, Any] = dict(self._figures)
        out.update(self._shredder.figures)
        out.update(
            keys_pending_destruction=self._shredder.pending,
            enabled=self._cfg.enabled,
            shedding=self._shedding,
            open_visits=len(sessions.open_visits) if sessions else 0,
            raw_ids_in_memory=sessions.raw_ids_held if sessions else 0,
            pending_visits=len(self._pending),
            loyalty_tags=len(self._loyalty),
            key_age_s=int(self._clock() - self._key_created) if sessions else 0,
        )
        return out
