"""``LedgerStorePort``: the agent's implementation of :class:`sync.store_port.StorePort`.

Everything sync needs from the store goes through here, over ``edge_agent.ledger.Ledger``;
``sync`` never imports the agent. Device statuses are pushed in by the agent
(``set_device_status`` / ``remove_device``) and read by sync.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from edge_agent import command_apply as cmds
from edge_agent.customers.commands import ERASING_TYPES, truncate_wal
from edge_agent.customers.commands import purge as purge_customers
from edge_agent.ledger import Ledger, Tx
from edge_agent.resync import apply_snapshot
from edge_agent.retail import reservations
from sync.messages import Snapshot
from sync.store_port import (
    BatchOutcome,
    CommandOutcome,
    DeviceReport,
    DigestFigures,
    EpochMark,
    EventRange,
    HealthFigures,
    StorePort,
)

log = structlog.get_logger("edge_agent.sync_adapter")

RELEASE_AFTER_EVENTS = 10_000
"""Once this many events were acked since the last release and central holds them all,
the ledger gives back its caches (issue 18: RSS after a drained backlog ≈ idle RSS)."""


class LedgerStorePort:
    """``LedgerStorePort(ledger)`` — a StorePort over the agent's ledger."""

    def __init__(self, ledger: Ledger, devices: Sequence[DeviceReport] = ()) -> None:
        """``devices``: the initial status of every configured device, so that a device
        removed from the config (and only such a device) is cleared at start-up."""
        self.ledger = ledger
        self._devices: dict[str, DeviceReport] = {d.device: d for d in devices}
        self._device_listeners: list[Callable[[], None]] = []
        self._acked: dict[str, int] = {}
        self._acked_burst = 0

    # -- identity ------------------------------------------------------------------------
    @property
    def store_id(self) -> str:
        return self.ledger.store_id

    @property
    def current_epoch(self) -> str:
        return self.ledger.current_epoch

    # -- events ----------------------------------------------------------------------------
    async def epochs(self) -> Sequence[EpochMark]:
        return await self.ledger.epochs()  # EpochInfo is an EpochMark

    async def event_range(
        self, epoch: str, after_seq: int, *, max_events: int, max_bytes: int
    ) -> EventRange | None:
        found = await self.ledger.event_range(
            epoch, after_seq, max_events=max_events, max_bytes=max_bytes
        )
        return None if found is None else EventRange(*found)

    async def mark_acked(self, epoch: str, through_seq: int) -> None:
        await self.ledger.mark_acked(epoch, through_seq)
        before = self._acked.get(epoch)
        self._acked[epoch] = through_seq
        if before is not None:
            self._acked_burst += max(0, through_seq - before)
        if self._acked_burst >= RELEASE_AFTER_EVENTS and await self._caught_up():
            self._acked_burst = 0
            await self.ledger.release_memory()  # a backlog drained: its pages are cached

    async def _caught_up(self) -> bool:
        return all(e.acked_seq >= e.last_seq for e in await self.ledger.epochs())

    async def lost_history(self, epoch: str, central_seq: int, local_last_seq: int) -> str:
        def op(tx: Tx) -> str:
            new = tx.new_epoch("lost history")
            tx.set_meta("resync_needed", "1")
            tx.set_meta("resync_reason", "lost history")
            tx.append(
                "alert",
                {
                    "kind": "lost_history",
                    "epoch": epoch,
                    "central_seq": central_seq,
                    "local_last_seq": local_last_seq,
                    "new_epoch": new,
                },
            )
            return new

        return await self.ledger.write(op)

    async def record_alert(self, kind: str, fields: Mapping[str, Any]) -> None:
        data = {"kind": kind, **fields}
        await self.ledger.write(lambda tx: tx.append("alert", data))

    async def prune_acked(self, older_than_ts: str) -> int:
        pruned = await self.ledger.prune_acked(older_than_ts)
        # the customer cache's retention runs on the same timer (edge_agent.customers)
        await self.ledger.write(lambda tx: purge_customers(tx, time.time()))
        return pruned

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        self.ledger.add_commit_listener(callback)

    # -- commands ----------------------------------------------------------------------------
    async def _meta(self, key: str) -> str | None:
        def read(conn: Any) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self.ledger.read(read)

    async def applied_cseq(self) -> int:
        return int(await self._meta("applied_cseq") or 0)

    async def has_resynced(self) -> bool:
        return await self._meta("resynced_at") is not None

    async def needs_resync(self) -> str | None:
        def read(conn: Any) -> str | None:
            rows = dict(conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('resync_needed', 'resync_reason')"
            ).fetchall())
            if rows.get("resync_needed") != "1":
                return None
            return str(rows.get("resync_reason") or "unspecified")

        return await self.ledger.read(read)

    async def request_resync(self, reason: str) -> None:
        def op(tx: Tx) -> None:
            tx.set_meta("resync_needed", "1")
            tx.set_meta("resync_reason", reason)

        await self.ledger.write(op)

    async def apply_command_batch(self, commands: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        outcomes: list[CommandOutcome] = []
        resync = False
        erased = False
        applied = await self.applied_cseq()
        for command in commands:
            cseq = command.get("cseq")
            if type(cseq) is not int or cseq <= applied:
                continue
            if cseq != applied + 1:
                break
            status, reason = await self.ledger.write(_applier(command))
            outcomes.append(CommandOutcome(cseq, status, reason))
            if status == "ignored" and reason == "out of order":
                break
            applied = cseq
            erased |= command.get("type") in ERASING_TYPES and status == "applied"
            if command.get("type") == "resync" and status != "quarantined":
                resync = True
                break
        if erased:  # a withdrawn customer's pages must not linger in the WAL
            try:
                await asyncio.to_thread(truncate_wal, Path(self.ledger.path))
            except sqlite3.Error as exc:
                log.info("customers: WAL truncation deferred", error=str(exc))
        return BatchOutcome(applied, tuple(outcomes), resync)

    async def apply_snapshot(self, snapshot: Snapshot) -> None:
        await self.ledger.write(lambda tx: apply_snapshot(tx, snapshot))

    async def expire_reservations(self) -> int:
        return await self.ledger.write(reservations.expire_reservations)

    async def next_reservation_expiry(self) -> float | None:
        return await self.ledger.read(reservations.next_reservation_expiry)

    # -- digest, health, devices ------------------------------------------------------------------
    async def digest_state(self) -> DigestFigures:
        return await self.ledger.digest_state()

    async def health(self) -> HealthFigures:
        stats = await self.ledger.stats()
        free = await asyncio.to_thread(shutil.disk_usage, self.ledger.path.parent)
        return HealthFigures(
            outbox_pending=stats.outbox_pending,
            outbox_oldest_ts=stats.outbox_oldest_ts,
            db_bytes=stats.db_bytes,
            wal_bytes=stats.wal_bytes,
            disk_free_bytes=free.free,
            last_seq=stats.last_seq,
        )

    def device_statuses(self) -> Sequence[DeviceReport]:
        return list(self._devices.values())

    def add_device_listener(self, callback: Callable[[], None]) -> None:
        self._device_listeners.append(callback)

    def set_device_status(self, status: DeviceReport) -> None:
        """Called by the agent (on the event loop) when a device's state changes."""
        self._devices[status.device] = status
        for callback in self._device_listeners:
            callback()

    def remove_device(self, name: str) -> None:
        if self._devices.pop(name, None) is not None:
            for callback in self._device_listeners:
                callback()

    async def published_devices(self) -> set[str]:
        raw = await self._meta("sync_published_devices")
        return set(json.loads(raw)) if raw else set()

    async def set_published_devices(self, names: set[str]) -> None:
        value = json.dumps(sorted(names))
        await self.ledger.write(lambda tx: tx.set_meta("sync_published_devices", value))


def _applier(command: Mapping[str, Any]) -> Callable[[Tx], tuple[cmds.Status, str | None]]:
    def op(tx: Tx) -> tuple[cmds.Status, str | None]:
        return cmds.apply_command(tx, command)

    return op


def store_port(ledger: Ledger, devices: Sequence[DeviceReport] = ()) -> StorePort:
    """``LedgerStorePort`` typed as the protocol (mypy checks the two agree)."""
    return LedgerStorePort(ledger, devices)
