"""The stock projection: applied events' stock deltas wait in memory and reach the stock
table with a later group (or when idle); readers add the pending ones back."""

from __future__ import annotations

from central.engine.base import EngineBase
from central.engine.state import PROJECTION_MAX_EVENTS
from central.runs import add_events, unprojected


class ProjectionMixin(EngineBase):
    """Pending stock deltas and their projection into the stock table."""

    def projection_due(self, now: float) -> bool:
        """Write the stock projection with this group: ``projection_interval`` after the
        oldest pending event, or sooner when many wait. (An idle writer calls
        :meth:`flush_projection` itself.)"""
        if self._pending_since is None:
            return False
        return (now - self._pending_since >= self.projection_interval
                or self._pending_events >= PROJECTION_MAX_EVENTS)

    def _write_projection(self) -> None:
        """Add the pending deltas to the stock table and move ``projected_seq`` up, in the
        current transaction; the in-memory state is cleared only after its commit."""
        if self._pending:
            self.conn.add_stock([(store, sku, c[0], c[1])
                                 for store, cells in self._pending.items()
                                 for sku, c in cells.items() if c[0] or c[1]])
        if self._pending_epochs:
            self.conn.executemany(
                "UPDATE epochs SET projected_seq = ? WHERE store = ? AND epoch = ?",
                [(self.applied[key], key[0], key[1]) for key in self._pending_epochs])

    def _projection_committed(self) -> None:
        if self.watcher is not None:
            self.watcher.on_projected(self._pending)
        self._pending.clear()
        self._pending_epochs.clear()
        self._pending_events = 0
        self._pending_since = None

    def flush_projection(self) -> None:
        """Write the pending stock projection in its own transaction (idle, stop, tests)."""
        if self._pending_since is None:
            return
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self.fencing.begin(self.conn)
            self._write_projection()
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self.load()
            raise
        self._projection_committed()

    def _replay_unprojected(self) -> None:
        """After a restart or a failed group: the events applied after the stock table's
        checkpoint become pending deltas again (read back from the runs)."""
        for store, epoch, projected, applied in unprojected(self.conn):
            if not self.owns(store):
                continue  # another worker's store (central.ownership) projects its own
            add_events(self._pending.setdefault(store, {}), self.conn, store, epoch,
                       (projected, applied))
            key = (store, epoch)
            self._pending_epochs.add(key)
            self._pending_events += applied - projected
            if self._pending_since is None:
                self._pending_since = self.clock()

    def exact_sku(self, sku: str) -> dict[str, tuple[int, int]]:
        """store → (on hand, reserved) of one SKU from the writer's own view: the stock
        table (in the current transaction) plus the deltas not yet projected into it."""
        cells = {str(store): (int(on), int(res)) for store, on, res in self.conn.execute(
            "SELECT store, on_hand, reserved FROM stock WHERE sku = ?", (sku,))}
        for store, pending in self._pending.items():
            delta = pending.get(sku)
            if delta is not None:
                on, res = cells.get(store, (0, 0))
                cells[store] = (on + delta[0], res + delta[1])
        return cells
