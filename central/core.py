"""The protocol engine of the reference central (PROTOCOL v1, central side): composes the
jobs of :mod:`central.engine` into :class:`Core` and runs its transactions.

Synchronous and single-threaded by design: one writer owns the database connection and
the in-memory watermarks. The I/O shell (:mod:`central.service`) hands it bursts of
MQTT messages; :meth:`Core.process` applies the whole burst in ONE transaction (group
commit), and only after that commit returns the acks and commands to publish. Nothing is
published for work that was not committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from central.engine.base import WriteTx
from central.engine.commands import CommandsMixin
from central.engine.digests import DigestsMixin
from central.engine.ingest import IngestMixin
from central.engine.projection import ProjectionMixin
from central.engine.state import (
    PROJECTION_INTERVAL,
    READ_TYPES,
    Counters,
    Group,
    Inbound,
    Publish,
    StoreState,
)
from central.engine.status import StatusMixin
from central.errors import StorageError
from central.fencing import Fencing
from central.hooks import Watcher
from central.restore import RestoreWatch
from central.storage import Connection
from sync.recalls import RECALL_BLOCKED
from sync.wire import canonical_json, now_ts

__all__ = ["Core", "Inbound", "Publish"]  # the types of Core's own signatures

log = logging.getLogger("central")


class Core(IngestMixin, ProjectionMixin, StatusMixin, CommandsMixin, DigestsMixin):
    """Apply store messages and issue commands against one database connection."""

    def __init__(
        self,
        conn: Connection,
        root: str = "retail",
        resend_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        owns: Callable[[str], bool] | None = None,
        *,
        watcher: Watcher | None = None,
    ) -> None:
        self.conn = conn
        self.root = root
        self.resend_after = resend_after
        self.clock = clock
        self.owns = owns or (lambda _store: True)
        self.watcher = watcher
        self._watched = (READ_TYPES | {RECALL_BLOCKED}
                         | (watcher.types if watcher is not None else frozenset()))
        self.applied: dict[tuple[str, str], int] = {}
        self.max_seen: dict[tuple[str, str], int] = {}
        self.stores: dict[str, StoreState] = {}
        self._drop_ranges: dict[tuple[Any, ...], int] = {}
        self._conflicts: set[tuple[str, str, int, str]] = set()
        self._n = Counters()
        self.projection_interval = PROJECTION_INTERVAL
        # stock deltas of applied events not yet in the stock table: store → sku → [on, res]
        self._pending: dict[str, dict[str, list[int]]] = {}
        self._pending_epochs: set[tuple[str, str]] = set()
        self._pending_events = 0
        self._pending_since: float | None = None
        self.restore_watch = RestoreWatch.load(conn)  # central.restore: restored from a backup
        self.fencing: Fencing | None = None  # central.ownership: leases checked per transaction
        self.load()

    def load(self) -> None:
        """(Re)load watermarks from the database: at start and after a failed group."""
        self.applied.clear()
        self.max_seen.clear()
        self._pending.clear()
        self._pending_epochs.clear()
        self._pending_events = 0
        self._pending_since = None
        self._conflicts.clear()  # alerts of a rolled-back group must be raised again
        old = self.stores
        self.stores = {}
        for store, epoch, applied, seen in self.conn.execute(
            "SELECT store, epoch, applied_seq, max_seen_seq FROM epochs"
        ):
            self.applied[(store, epoch)] = int(applied)
            self.max_seen[(store, epoch)] = int(seen)
        for store, state, epoch, boot_id, issued, acked in self.conn.execute(
            "SELECT store, state, epoch, boot_id, issued_cseq, acked_cseq FROM stores"
        ):
            st = StoreState(issued=int(issued), epoch=epoch, boot_id=boot_id,
                            online=state == "online",
                            acked=None if acked is None else int(acked))
            prev = old.get(store)
            if prev is not None:
                st.last_progress = prev.last_progress
                st.last_goback = prev.last_goback
                st.pending_digest = prev.pending_digest
            st.sent_through = st.acked or 0
            self.stores[store] = st
        for store, n in self.conn.execute(
            "SELECT store, COUNT(*) FROM quarantine WHERE resolved = 0 GROUP BY store"
        ):
            self._store(store).quarantined = int(n)
        self._replay_unprojected()

    def counters(self) -> Counters:
        return replace(self._n)

    def process(self, messages: Iterable[tuple[str, bytes, bool] | Inbound]) -> list[Publish]:
        """Apply a burst of MQTT messages in one transaction; return what to publish.

        A message whose handling raises an unexpected error (a bug, not bad input: bad
        input is dropped) is logged and skipped; the group is rolled back, the state
        reloaded and the rest of the group applied again, so one poison message can never
        hold back the other stores' acks."""
        batch = list(messages)
        poisoned: set[int] = set()
        while True:
            now = self.clock()
            group = Group(ts=now_ts(), now=now)
            counters = replace(self._n)
            current = -1
            project = False
            self.conn.begin_write()
            try:
                if self.fencing is not None:
                    self.fencing.begin(self.conn)  # central.fencing: raises Fenced
                for current, message in enumerate(batch):
                    if current in poisoned:
                        continue
                    self._n.messages += 1
                    self._dispatch(group, message)
                current = -1
                self._flush(group)
                for store in group.digests:
                    self._check_digest(group, store)
                self._flush_alerts(group)
                self._ensure_store_rows(group)
                project = self.projection_due(now)
                if project:
                    self._write_projection()
                if self.fencing is not None:
                    self.fencing.log(self.conn, group.epochs, self.applied)
                if self.watcher is not None:
                    self.watcher.before_commit(WriteTx(self, group), group.contacts.union(
                        store for store, _ in group.acks))
                self.conn.commit()
            except StorageError:
                self.conn.rollback()
                log.exception("group transaction failed; nothing acknowledged, reloading state")
                self._watcher_rolled_back()
                self.load()
                return []
            except Exception:
                self.conn.rollback()
                self._watcher_rolled_back()
                self._n = counters
                self.load()
                if current < 0:
                    raise
                log.exception("message on %s could not be handled; skipped",
                              batch[current][0])
                poisoned.add(current)
                self._n.drops += 1
                continue
            break
        if project:
            self._projection_committed()
        if self.watcher is not None:
            self.watcher.committed()
        self._n.groups += 1
        out: list[Publish] = []
        for store, epoch in group.acks:
            out.append(self._ack(store, epoch, group.ts))
        self._n.acks += len(group.acks)
        for store, start in group.sends:
            out.extend(self._send_from(store, start, now))
        return out

    def current_acks(self, ts: str) -> list[Publish]:
        """The ack of every (store, epoch) as it stands, to publish after a reconnect.

        While central was away from the broker, stores may have published batches that
        nobody received (a clean session has no queue). A live ack that does not advance
        makes such a store go back at once (PROTOCOL §4.3) instead of after its
        ``resend_after``.
        """
        return [self._ack(store, epoch, ts) for store, epoch in list(self.applied)
                if self.owns(store)]

    def run_write(self, fn: Callable[[WriteTx], Any]) -> tuple[Any, list[Publish]]:
        """Run ``fn`` in one write transaction (on the writer thread); commands it issues
        are sent after the commit. A failure rolls everything back; with store ownership,
        a lease this worker lost raises :class:`Fenced` (``central.fencing``)."""
        now = self.clock()
        group = Group(ts=now_ts(), now=now)
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self.fencing.begin(self.conn)  # central.fencing: order writes under the lease
            result = fn(WriteTx(self, group))
            self._flush_alerts(group)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self._watcher_rolled_back()
            self.load()
            raise
        return result, self._committed(group, now)

    def _ack(self, store: str, epoch: str, ts: str) -> Publish:
        body = {"v": 1, "store": store, "epoch": epoch,
                "through_seq": self.applied.get((store, epoch), 0), "ts": ts}
        return Publish(f"{self.root}/v1/stores/{store}/events/ack", canonical_json(body), True)

    def checkpoint(self) -> None:
        """Passive WAL checkpoint (SQLite only); never blocks on readers."""
        if self.conn.dialect == "sqlite":
            try:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except StorageError:
                log.warning("WAL checkpoint failed", exc_info=True)

    def resolve_quarantine(self, store: str, epoch: str, seq: int) -> bool:
        """An operator has dealt with a quarantined event: automatic resync is allowed again
        once none is left."""
        self.conn.begin_write()
        try:
            rows = self.conn.execute(
                "SELECT resolved FROM quarantine WHERE store = ? AND epoch = ? AND seq = ?",
                (store, epoch, seq))
            if not rows or rows[0][0]:
                self.conn.rollback()
                return False
            self.conn.execute("UPDATE quarantine SET resolved = 1 WHERE store = ? AND "
                              "epoch = ? AND seq = ?", (store, epoch, seq))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        st = self._store(store)
        st.quarantined = max(0, st.quarantined - 1)
        return True
